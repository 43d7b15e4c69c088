#!/usr/bin/env bash
# Instructions per transaction in pgsplit, from callgrind: deterministic where timings on a shared VM are not.
#   benches/callgrind.sh CONFIG DSN MODE N [SQL]
# Starts target/release/pgsplit under callgrind with CONFIG (its `listen` must match DSN), warms up with 300
# pgbench transactions, zeroes the counters, runs N transactions of SQL with `pgbench -M MODE -c CLIENTS` (env,
# default 1), and prints the instructions per transaction. The profile stays in callgrind.out.pgsplit.* for
# callgrind_annotate. PGSPLIT_BIN runs another build instead (a saved copy of an older one, for before/after).
set -euo pipefail
CONFIG=$1 DSN=$2 MODE=$3 N=$4 SQL=${5:-select count(*) from workspace.imports;}
QUERY=$(mktemp)
echo "$SQL" > "$QUERY"
rm -f callgrind.out.pgsplit.*
valgrind --tool=callgrind --callgrind-out-file=callgrind.out.pgsplit.%p "${PGSPLIT_BIN:-$(dirname "$0")/../target/release/pgsplit}" --config "$CONFIG" \
  > callgrind.log 2>&1 &
VPID=$!
trap 'kill -INT $VPID 2>/dev/null || true; rm -f "$QUERY"' EXIT
for _ in $(seq 100); do pg_isready -q -d "$DSN" && break; sleep 0.2; done
pgbench -n -f "$QUERY" -M "$MODE" -c 1 -j 1 -t 300 "$DSN" > /dev/null
callgrind_control -z $VPID > /dev/null
pgbench -n -f "$QUERY" -M "$MODE" -c ${CLIENTS:-1} -j ${CLIENTS:-1} -t $((N / ${CLIENTS:-1})) "$DSN" > /dev/null
callgrind_control -d $VPID > /dev/null 2>&1
kill -INT $VPID; wait $VPID 2>/dev/null || true
for f in callgrind.out.pgsplit.*.1; do
  total=$(callgrind_annotate --threshold=100 "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$MODE: $total instructions for $N transactions: $((total / N)) per transaction ($f)"
done
