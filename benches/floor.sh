#!/usr/bin/env bash
# What a proxy costs the whole machine per transaction, and so the most any proxy can reach against a direct
# connection when the machine's cores are the limit:
#   benches/floor.sh CONFIG DSN DIRECT_DSN MODE CLIENTS [ROUNDS] [SQL]
# Runs SQL (pgbench -M MODE -c CLIENTS, 8 s, after 2 s of warm-up) directly on DIRECT_DSN, through pgsplit (started
# with CONFIG, whose `listen` must match DSN) and, with PGBOUNCER_SERVER set as for benches/callgrind.sh, through a
# PgBouncer in transaction mode (pool 20) on DSN's port + 2; ROUNDS rounds, interleaved. Each line: TPS, the whole
# machine's busy CPU per transaction (/proc/stat: user, nice, system, irq, softirq, steal; µs) and the proxy
# process's own user and system time per transaction (µs, from /proc/PID/stat).
#
# Reading it: through a proxy a transaction costs the direct one's machine time plus the proxy's. The proxy's
# system time (its four socket calls on loopback TCP and its wake-ups) is paid by every user-space proxy, so with
# the cores saturated a proxy reaches at most direct / (direct + proxy system time) of the direct TPS.
set -euo pipefail
CONFIG=$1 DSN=$2 DIRECT=$3 MODE=$4 CLIENTS=$5 ROUNDS=${6:-2} SQL=${7:-select count(*) from workspace.imports;}
BIN=${PGSPLIT_BIN:-$(dirname "$0")/../target/release/pgsplit}
QUERY=$(mktemp)
echo "$SQL" > "$QUERY"
chmod 644 "$QUERY"
dir=$(mktemp -d)
"$BIN" --config "$CONFIG" > "$dir/pgsplit.log" 2>&1 &
SPID=$!
BPID=
trap 'kill -INT $SPID 2>/dev/null || true; [ -n "$BPID" ] && kill $BPID 2>/dev/null; rm -rf "$QUERY" "$dir"' EXIT
for _ in $(seq 50); do pg_isready -q -d "$DSN" && break; sleep 0.2; done

if [ -n "${PGBOUNCER_SERVER:-}" ]; then
  auth=${DSN#*://}; auth=${auth%%@*}; user=${auth%%:*}; password=${auth#*:}
  hostport=${DSN#*@}; hostport=${hostport%%/*}; port=$(( ${hostport##*:} + 2 ))
  db=${DSN##*/}; db=${db%%\?*}
  cat > "$dir/pgbouncer.ini" <<INI
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
pidfile = $dir/pgbouncer.pid
ignore_startup_parameters = extra_float_digits,options
INI
  echo "\"$user\" \"$password\"" > "$dir/userlist.txt"
  run=()
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; run=(runuser -u postgres --); fi
  "${run[@]}" pgbouncer -d "$dir/pgbouncer.ini"
  for _ in $(seq 50); do [ -s "$dir/pgbouncer.pid" ] && break; sleep 0.1; done
  BPID=$(cat "$dir/pgbouncer.pid")
  BOUNCER="postgresql://$user:$password@127.0.0.1:$port/$db"
fi

busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
proc() { awk '{print $14, $15}' "/proc/$1/stat"; }
# run NAME DSN [PID]
run() {
  pgbench -n -f "$QUERY" -M "$MODE" -c "$CLIENTS" -j 2 -T 2 "$2" > /dev/null 2>&1 || true
  local t1 t2 u1=0 s1=0 u2=0 s2=0 out tx tps line
  t1=$(busy)
  [ -n "${3:-}" ] && read -r u1 s1 < <(proc "$3")
  out=$(pgbench -n -f "$QUERY" -M "$MODE" -c "$CLIENTS" -j 2 -T 8 "$2" 2>&1 || true)
  t2=$(busy)
  [ -n "${3:-}" ] && read -r u2 s2 < <(proc "$3")
  tx=$(echo "$out" | awk '/actually processed/ {split($NF, a, "/"); print a[1]}')
  tps=$(echo "$out" | awk '/^tps/ {print int($3)}')
  [ -n "$tx" ] && [ "$tx" -gt 0 ] || { echo "$1 -M $MODE c=$CLIENTS: failed"; return; }
  # clock ticks (1/100 s) to µs per transaction
  line="$1 -M $MODE c=$CLIENTS: tps $tps, machine $(( (t2 - t1) * 10000 / tx )) µs/tx"
  [ -n "${3:-}" ] && line="$line, proxy user $(( (u2 - u1) * 10000 / tx )) sys $(( (s2 - s1) * 10000 / tx )) µs/tx"
  echo "$line"
}
for _ in $(seq "$ROUNDS"); do
  run direct "$DIRECT"
  run pgsplit "$DSN" $SPID
  [ -n "$BPID" ] && run pgbouncer "$BOUNCER" "$BPID"
done
