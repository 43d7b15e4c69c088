#!/usr/bin/env bash
# Instructions per transaction in pgsplit, from callgrind: deterministic where timings on a shared VM are not.
#   benches/callgrind.sh CONFIG DSN MODE N [SQL]
# Starts target/release/pgsplit under callgrind with CONFIG (its `listen` must match DSN), warms up with 300
# pgbench transactions, zeroes the counters, runs N transactions of SQL with `pgbench -M MODE -c CLIENTS` (env,
# default 1), and prints the instructions per transaction. The profile stays in callgrind.out.pgsplit.* for
# callgrind_annotate. PGSPLIT_BIN runs another build instead (a saved copy of an older one, for before/after).
#
# PGBOUNCER_SERVER='host=127.0.0.1 port=P dbname=D user=U password=W' (PgBouncer's connection string for DATA)
# measures PgBouncer the same way, beside pgsplit: after pgsplit's count, the same workload through a PgBouncer in
# transaction mode (pool 20) that listens on DSN's port + 1 and knows DSN's user and password; its count is printed
# on a `pgbouncer:` line (its profile in callgrind.out.pgbouncer.*). Run as root, PgBouncer runs as `postgres`.
# PgBouncer trusts the client (auth_type = trust): with a password in its auth_file it would derive the SCRAM key
# at the measured run's login (PBKDF2, 4,096 rounds: ~130 million instructions, 43k per transaction of 3,000),
# where pgsplit keeps verifiers computed at start.
set -euo pipefail
CONFIG=$1 DSN=$2 MODE=$3 N=$4 SQL=${5:-select count(*) from workspace.imports;}
QUERY=$(mktemp)
echo "$SQL" > "$QUERY"
chmod 644 "$QUERY"

# Runs pgbench's warm-up, zeroes callgrind's counters of the process matching $1, runs the N transactions against
# $2, dumps the counters. `control` runs callgrind_control as the measured process's user (its vgdb files carry
# that user's name).
control=()
measure() {
  local who=$1 dsn=$2
  for _ in $(seq 100); do pg_isready -q -d "$dsn" && break; sleep 0.2; done
  pgbench -n -f "$QUERY" -M "$MODE" -c 1 -j 1 -t 300 "$dsn" > /dev/null
  "${control[@]}" callgrind_control -z "$who" > /dev/null
  pgbench -n -f "$QUERY" -M "$MODE" -c ${CLIENTS:-1} -j ${CLIENTS:-1} -t $((N / ${CLIENTS:-1})) "$dsn" > /dev/null
  "${control[@]}" callgrind_control -d "$who" > /dev/null 2>&1
}

# Prints the instructions per transaction of the dumped profiles named $1.*.1, labelled $2.
report() {
  for f in "$1".*.1; do
    total=$(callgrind_annotate --threshold=100 "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "$2$MODE: $total instructions for $N transactions: $((total / N)) per transaction ($f)"
  done
}

rm -f callgrind.out.pgsplit.* callgrind.out.pgbouncer.*
valgrind --tool=callgrind --callgrind-out-file=callgrind.out.pgsplit.%p "${PGSPLIT_BIN:-$(dirname "$0")/../target/release/pgsplit}" --config "$CONFIG" \
  > callgrind.log 2>&1 &
VPID=$!
trap 'kill -INT $VPID 2>/dev/null || true; rm -f "$QUERY"' EXIT
measure $VPID "$DSN"
kill -INT $VPID; wait $VPID 2>/dev/null || true
report callgrind.out.pgsplit ""

if [ -n "${PGBOUNCER_SERVER:-}" ]; then
  # user:password@host:port from the DSN (postgresql://user:password@host:port/db...).
  auth=${DSN#*://}; auth=${auth%%@*}; user=${auth%%:*}; password=${auth#*:}
  hostport=${DSN#*@}; hostport=${hostport%%/*}; port=$(( ${hostport##*:} + 1 ))
  db=${DSN##*/}; db=${db%%\?*}
  dir=$(mktemp -d)
  cat > "$dir/pgbouncer.ini" <<EOF
[databases]
$db = $PGBOUNCER_SERVER

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 200
logfile = $dir/pgbouncer.log
ignore_startup_parameters = extra_float_digits,options
EOF
  echo "\"$user\" \"$password\"" > "$dir/userlist.txt"
  run=()
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$dir"
    run=(runuser -u postgres --)
  fi
  # The profile is written in $dir (PgBouncer's user may not write here) and copied here afterwards.
  "${run[@]}" valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out.pgbouncer.%p" pgbouncer "$dir/pgbouncer.ini" \
    > callgrind.pgbouncer.log 2>&1 &
  BPID=$!
  trap 'pkill -TERM -f "callgrind.out.pgbouncer" 2>/dev/null || true; rm -rf "$QUERY" "$dir"' EXIT
  control=("${run[@]}")
  measure pgbouncer "postgresql://$user:$password@127.0.0.1:$port/$db"
  pkill -TERM -f "callgrind.out.pgbouncer" || true
  wait $BPID 2>/dev/null || true
  cp "$dir"/callgrind.out.pgbouncer.* .
  report callgrind.out.pgbouncer "pgbouncer: "
fi
