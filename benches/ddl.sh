#!/bin/bash
# DDL through pgsplit against the same server directly (issue 16, point 11): N CREATE TABLE statements, each with a
# foreign key to the one before, then their DROPs, run by psql from one script. Prints the wall time of each run.
#   benches/ddl.sh "$DIRECT_DSN" "$PGSPLIT_DSN" [N=100] [ROUNDS=3]
# (`pgsplit demo` prints the pgsplit DSN and DATA's port; DATA's own login is in the demo's routing.yaml.)
set -euo pipefail
DIRECT=$1; PROXY=$2; N=${3:-100}; ROUNDS=${4:-3}
PSQL=$(pg_config --bindir)/psql
run() {
  local dsn=$1 tag=$2 sql
  sql=$(mktemp)
  {
    echo "create table workspace.ddl_${tag}_0 (id int primary key);"
    for i in $(seq 1 "$N"); do
      echo "create table workspace.ddl_${tag}_$i (id int primary key, ref int references workspace.ddl_${tag}_$((i-1))(id));"
    done
    for i in $(seq "$N" -1 0); do echo "drop table workspace.ddl_${tag}_$i;"; done
  } > "$sql"
  local start end
  start=$(date +%s.%N)
  "$PSQL" "$dsn" -X -q -v ON_ERROR_STOP=1 -f "$sql"
  end=$(date +%s.%N)
  rm -f "$sql"
  printf '%-8s %6.3f s for %d DDL statements\n' "$3" "$(echo "$end - $start" | bc)" $((2 * N + 2))
}
for r in $(seq 1 "$ROUNDS"); do
  run "$DIRECT" "d$$_$r" direct
  run "$PROXY" "p$$_$r" pgsplit
done
