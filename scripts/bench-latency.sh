#!/usr/bin/env bash
# The latency table of README's benchmark section in one go: `qianzhi bench --latency MS
# --max-in-flight N` for every latency × max_in_flight, the cells interleaved round by round
# (so a busy spell of the machine hits every cell alike), and the median rows/s of each cell
# with its percentage of the 0 ms figure of the same column.
#
# usage: scripts/bench-latency.sh [QIANZHI_BINARY]
# environment: RUNS (3), ROWS (100000), LATENCIES ("0 5 20 50"), IN_FLIGHT ("1 4 8 16 32"),
#   QIANZHI_BENCH_DATABASE (bench's default: local PostgreSQL), DB_NAME (qianzhi_bench_latency:
#   dropped and created on that server), LOG (where every run's output goes).
set -euo pipefail

bin=${1:-target/release/qianzhi}
runs=${RUNS:-3}
rows=${ROWS:-100000}
latencies=${LATENCIES:-0 5 20 50}
in_flight=${IN_FLIGHT:-1 4 8 16 32}
db_name=${DB_NAME:-qianzhi_bench_latency}
log=${LOG:-$(mktemp -t bench-latency.XXXXXX)}
results=$(mktemp -t bench-latency-results.XXXXXX)
trap 'rm -f "$results"' EXIT

[ -x "$bin" ] || { echo "no executable $bin (cargo build --release first)" >&2; exit 2; }
echo "bench-latency: $bin, $rows rows, $runs runs per cell, log in $log" >&2
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at start, $(date -u '+%Y-%m-%d %H:%M UTC')" >&2

for run in $(seq "$runs"); do
  for ms in $latencies; do
    for n in $in_flight; do
      out=$("$bin" bench --rows "$rows" --latency "$ms" --max-in-flight "$n" --db-name "$db_name" 2>&1) || {
        echo "$out" >>"$log"
        echo "bench failed at ${ms} ms, max_in_flight $n (see $log)" >&2
        exit 1
      }
      echo "$out" >>"$log"
      rate=$(echo "$out" | sed -n 's/.*deliver end to end .* s *\([0-9]*\) rows\/s.*/\1/p')
      [ -n "$rate" ] || { echo "no rows/s in the output at ${ms} ms, $n (see $log)" >&2; exit 1; }
      echo "$ms $n $rate" >>"$results"
      echo "run $run: ${ms} ms, max_in_flight $n: $rate rows/s" >&2
    done
  done
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg) at the end" >&2

# Median of each cell, then the table: rows/s and % of the 0 ms median of the same column.
awk -v lats="$latencies" -v ns="$in_flight" '
  { v[$1" "$2] = v[$1" "$2] " " $3 }
  function median(s,   a, k, i, j, t) {
    k = split(s, a, " ")
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return k % 2 ? a[(k + 1) / 2] : int((a[k / 2] + a[k / 2 + 1]) / 2)
  }
  END {
    nl = split(lats, L, " "); nn = split(ns, N, " ")
    head = "| latency |"; sep = "|---|"
    for (j = 1; j <= nn; j++) { head = head " max_in_flight " N[j] " |"; sep = sep "---|" }
    print head; print sep
    for (j = 1; j <= nn; j++) base[j] = median(v["0 " N[j]])
    for (i = 1; i <= nl; i++) {
      line = "| " L[i] " ms |"
      for (j = 1; j <= nn; j++) {
        m = median(v[L[i] " " N[j]])
        pct = base[j] > 0 ? sprintf(" (%d%%)", 100 * m / base[j] + 0.5) : ""
        line = line " " m pct " |"
      }
      print line
    }
  }' "$results"
