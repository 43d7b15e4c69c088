#!/usr/bin/env bash
# The session cache against the runbook's session lookups (issue 18): statements reaching PRIMARY and TPS through
# pgsplit with and without `cache:`, interleaved.
#   benches/session_cache.sh CONFIG DSN PRIMARY_DSN [ROUNDS] [SECONDS] [CLIENTS]
# CONFIG: a pgsplit configuration without `cache:` whose `listen` matches DSN (with `cargo run --release -- demo`
# running: its .pgsplit-demo/routing.yaml with another `listen` port). PRIMARY_DSN: PRIMARY directly, as a role that
# may write config.users and config.sessions (the demo's `pgsplit` role, `?sslmode=require`).
#
# Workload (pgbench -M extended, a custom script pair by weight): 95% `select user_id, expires_at from
# config.sessions where token = $1` over a hot set of 1,000 tokens among 100,000 sessions, 5% `update
# config.sessions set expires_at = ... where token = $1`, the updates either on the hot set too (`hot`) or on any
# session (`spread`). Statements reaching PRIMARY are counted by the server: `idx_scan` of config.sessions (each
# lookup and each update by token is one index scan) from `pg_stat_user_tables`, read after pgsplit has stopped
# (its server connections' statistics are flushed when they close). The cached run uses
# `cache: { tables: [ { name: config.sessions, ttl: 30s, key: token } ] }` with the triggers of README *Session
# cache* installed (the script installs them), so pgsplit also LISTENs.
set -euo pipefail
CONFIG=$1 DSN=$2 PRIMARY=$3 ROUNDS=${4:-2} SECS=${5:-10} CLIENTS=${6:-16}
BIN=${PGSPLIT_BIN:-$(dirname "$0")/../target/release/pgsplit}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
grep -v '^cache:' "$CONFIG" > "$dir/plain.yaml"
{ cat "$dir/plain.yaml"; echo "cache: { tables: [ { name: config.sessions, ttl: 30s, key: token } ] }"; } > "$dir/cached.yaml"

psql -qX -v ON_ERROR_STOP=1 "$PRIMARY" -f "$(dirname "$0")/../docs/session-cache-notify.sql" > /dev/null
psql -qX -v ON_ERROR_STOP=1 "$PRIMARY" > /dev/null <<'SQL'
insert into config.users (email, name) values ('bench@pgsplit.test', 'bench') on conflict (email) do nothing;
insert into config.sessions (token, user_id, expires_at)
  select g::text, (select id from config.users where email = 'bench@pgsplit.test'), now() + interval '1 day'
  from generate_series(1, 100000) g
  on conflict (token) do nothing;
drop trigger if exists pgsplit_cache on config.sessions;
drop trigger if exists pgsplit_cache_truncate on config.sessions;
create trigger pgsplit_cache after insert or update or delete on config.sessions
  for each row execute function public.pgsplit_cache_notify('token');
create trigger pgsplit_cache_truncate after truncate on config.sessions
  for each statement execute function public.pgsplit_cache_notify();
SQL

cat > "$dir/read.sql" <<'SQL'
\set n random(1, 1000)
select user_id, expires_at from config.sessions where token = :n;
SQL
for spread in hot:1000 spread:100000; do
  cat > "$dir/write-${spread%%:*}.sql" <<SQL
\\set n random(1, ${spread##*:})
update config.sessions set expires_at = expires_at + interval '1 second' where token = :n;
SQL
done

scans() {
  psql -qXAt "$PRIMARY" -c "select idx_scan + seq_scan from pg_stat_user_tables where relid = 'config.sessions'::regclass"
}

for round in $(seq "$ROUNDS"); do
  for updates in hot spread; do
  for kind in plain cached; do
    "$BIN" --config "$dir/$kind.yaml" > "$dir/$kind.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do pg_isready -q -d "$DSN" && break; sleep 0.2; done
    sleep 1
    before=$(scans)
    out=$(pgbench -n -M extended -c "$CLIENTS" -j 2 -T "$SECS" -f "$dir/read.sql@95" -f "$dir/write-$updates.sql@5" "$DSN" 2>&1)
    kill -INT $pid
    wait $pid 2>/dev/null || true
    sleep 1
    after=$(scans)
    tx=$(echo "$out" | awk '/actually processed/ {split($NF, a, "/"); print a[1]}')
    tps=$(echo "$out" | awk '/^tps/ {print int($3)}')
    reached=$((after - before))
    echo "round $round, updates $updates, $kind: $tx transactions, $tps TPS, $reached statements reached PRIMARY ($(( reached * 1000 / tx )) per 1,000 transactions)"
  done
  done
done
