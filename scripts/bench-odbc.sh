#!/bin/sh
# Native PostgreSQL and PostgreSQL through psqlODBC, alternately, with the same binary (built
# with --features odbc) and the same rows: `bench --database odbc:` beside plain `bench`.
# Needs psql, odbc-postgresql and the local PostgreSQL of the README (trust auth).
#   scripts/bench-odbc.sh target/release/qianzhi        # ROWS=100000 RUNS=2 by default
set -eu
B=${1:-target/release/qianzhi}
ROWS=${ROWS:-100000}
RUNS=${RUNS:-2}
DB=qianzhi_bench_odbc
ODBC="odbc:Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Uid=postgres;Database=$DB"
for i in $(seq "$RUNS"); do
  echo "== run $i: native PostgreSQL"
  "$B" bench --rows "$ROWS" | grep -E 'rows/s|peak'
  # bench over ODBC uses the database named, which must hold no control tables: made anew.
  psql -h 127.0.0.1 -U postgres -d postgres -q -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" 2>&1 | grep -v NOTICE || true
  echo "== run $i: PostgreSQL through psqlODBC"
  "$B" bench --rows "$ROWS" --database "$ODBC" | grep -E 'rows/s|peak'
done
