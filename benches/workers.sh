#!/usr/bin/env bash
# TPS and p99 latency of one build with the configuration's `workers` and with `workers: 1`, in turn, for ROUNDS
# rounds:
#   benches/workers.sh CONFIG DSN [ROUNDS] [SQL]
# CONFIG's `listen` must match DSN (with `cargo run --release -- demo` running: its .pgsplit-demo/routing.yaml
# with another `listen` port). pgbench -M simple, 6 s per client count (1, 16, 64), one transaction in ten logged
# for the percentile; each cell is `TPS/p99 ms`. SQL `-S` runs pgbench's built-in select-only script (needs
# `pgbench -i` on the target CONFIG's default_target names). PGSPLIT_BIN runs another build.
set -euo pipefail
CONFIG=$1 DSN=$2 ROUNDS=${3:-3} SQL=${4:-select count(*) from workspace.imports;}
BIN=${PGSPLIT_BIN:-$(dirname "$0")/../target/release/pgsplit}
QUERY=$(mktemp) ONE=$(mktemp --suffix=.yaml) LOGS=$(mktemp -d)
echo "$SQL" > "$QUERY"
SCRIPT=(-f "$QUERY")
[ "$SQL" = "-S" ] && SCRIPT=(-S)
{ echo "workers: 1"; grep -v '^workers:' "$CONFIG"; } > "$ONE"
trap 'rm -rf "$QUERY" "$ONE" "$LOGS"' EXIT
for round in $(seq "$ROUNDS"); do
  for cfg in "$CONFIG" "$ONE"; do
    "$BIN" --config "$cfg" > /dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do pg_isready -q -d "$DSN" && break; sleep 0.2; done
    line="round $round, workers $([ "$cfg" = "$ONE" ] && echo 1 || echo configured):"
    for c in 1 16 64; do
      rm -f "$LOGS"/tx*
      tps=$(pgbench -n "${SCRIPT[@]}" -M simple -c $c -j 2 -T 6 -l --sampling-rate=0.1 --log-prefix="$LOGS/tx" "$DSN" 2>&1 |
        awk '/^tps/ {print int($3)}')
      p99=$(cat "$LOGS"/tx* | awk '{print $3}' | sort -n |
        awk '{a[NR] = $1} END {i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f", a[i] / 1000}')
      line="$line c=$c $tps/$p99"
    done
    echo "$line"
    kill -INT $pid; wait $pid 2>/dev/null || true
  done
done
