#!/bin/sh
# Native PostgreSQL and PostgreSQL through psqlODBC, alternately, with the same binary (built
# with --features odbc) and the same rows: `bench --database odbc:` beside plain `bench`.
# Needs psql, odbc-postgresql and the local PostgreSQL of the README (trust auth).
#   scripts/bench-odbc.sh target/release/qianzhi        # ROWS=100000 RUNS=2 by default
# OPTS are added to the ODBC connection string: by default Protocol=7.4-1, as docs/odbc.md
# recommends for psqlODBC (no SAVEPOINT round trip before every statement); OPTS= measures the
# driver's defaults. Text crosses as UTF-8 only in a UTF-8 locale (`qianzhi check` says which):
# the script runs under LC_ALL=C.UTF-8 unless LC_ALL is set.
set -eu
B=${1:-target/release/qianzhi}
ROWS=${ROWS:-100000}
RUNS=${RUNS:-2}
OPTS=${OPTS-Protocol=7.4-1}
export LC_ALL="${LC_ALL:-C.UTF-8}"
DB=qianzhi_bench_odbc
ODBC="odbc:Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Uid=postgres;Database=$DB;$OPTS"
for i in $(seq "$RUNS"); do
  echo "== run $i: native PostgreSQL"
  "$B" bench --rows "$ROWS" | grep -E 'rows/s|peak'
  # bench over ODBC uses the database named, which must hold no control tables: made anew.
  psql -h 127.0.0.1 -U postgres -d postgres -q -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" 2>&1 | grep -v NOTICE || true
  echo "== run $i: PostgreSQL through psqlODBC ($OPTS, LC_ALL=$LC_ALL)"
  "$B" bench --rows "$ROWS" --database "$ODBC" | grep -E 'rows/s|peak'
done
