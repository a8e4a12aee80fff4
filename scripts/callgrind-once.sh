#!/usr/bin/env bash
# Instructions per row of `qianzhi once` delivering N accept rows from PostgreSQL to the local
# simulator, counted by `valgrind --tool=callgrind`: a count that stays the same on a loaded
# machine, unlike rows/s. Only the `once` process runs under valgrind; the simulator and the
# database are separate processes and are not counted.
#
# Usage: scripts/callgrind-once.sh [--rows N] [--database URL] BIN [BIN...]
#   BIN   qianzhi executables to count (build with `cargo build --profile profiling` so that
#         callgrind_annotate can name functions). The first one also loads the rows, writes the
#         config and runs the simulator (it needs `bench --prepare-only`); every BIN gets a
#         freshly loaded change table.
# The callgrind files stay in $OUT (default /tmp/callgrind-once) for `callgrind_annotate`.
set -euo pipefail
rows=10000
database="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --database) database=$2; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--rows N] [--database URL] BIN [BIN...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
tool=$(realpath "$1")
out=${OUT:-/tmp/callgrind-once}
mkdir -p "$out"
work=$(mktemp -d)
sim_pid=
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The simulator prints its API root on the first line, then keeps running.
"$tool" simulate --listen 127.0.0.1:0 --token bench-token --count-only >"$work/sim.out" 2>/dev/null &
sim_pid=$!
for _ in $(seq 100); do
  api_root=$(grep -o 'http://[^ ]*' "$work/sim.out" | head -n1 || true)
  [ -n "$api_root" ] && break
  sleep 0.1
done
[ -n "$api_root" ] || { echo "the simulator did not start" >&2; exit 1; }
host=${api_root%%/ebus*}

n=0
for bin in "$@"; do
  n=$((n + 1))
  before=$(curl -fsS "$host/_sim/stats" | grep -o '"accepted":[0-9]*' | cut -d: -f2)
  "$tool" bench --rows "$rows" --database "$database" --prepare-only "$work" \
    --api-root "$api_root" >/dev/null
  file="$out/callgrind.$n.out"
  valgrind --tool=callgrind --callgrind-out-file="$file" \
    "$bin" --config "$work/config.toml" once --job accept 2>"$work/once.err" >/dev/null || {
    cat "$work/once.err" >&2
    exit 1
  }
  after=$(curl -fsS "$host/_sim/stats" | grep -o '"accepted":[0-9]*' | cut -d: -f2)
  if [ $((after - before)) -ne "$rows" ]; then
    echo "$bin: the simulator accepted $((after - before)) of $rows rows" >&2
    grep -E 'accept:' "$work/once.err" >&2 || true
    exit 1
  fi
  ir=$(grep -E '^(summary|totals):' "$file" | head -n1 | awk '{print $2}')
  printf '%s: %d rows, %d instructions, %d instructions/row (%s)\n' \
    "$bin" "$rows" "$ir" $((ir / rows)) "$file"
done
