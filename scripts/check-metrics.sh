#!/usr/bin/env bash
# Checks a /metrics scrape with `promtool check metrics` (Debian's prometheus package): runs
# `qianzhi demo`, then `qianzhi run` on the demo's config (which sets [http] listen), scrapes it
# (every family: delivery counters, backlog, last successes, credit-query spend) and stops it.
# Usage: scripts/check-metrics.sh [path/to/qianzhi]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/debug/qianzhi}"
[ -x "$bin" ] || { echo "no qianzhi binary at $bin; run cargo build first"; exit 1; }
command -v promtool >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$bin" demo --dir "$tmp/demo" > "$tmp/demo.out"
port=$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"$/\1/p' "$tmp/demo/config.toml")
[ -n "$port" ] || { echo "the demo config has no [http] listen"; exit 1; }
"$bin" --config "$tmp/demo/config.toml" run 2> "$tmp/run.log" &
pid=$!
scrape() {
  # Plain HTTP/1.0 over bash's /dev/tcp: no curl needed. Prints the body.
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}
body=
for _ in $(seq 1 100); do
  body=$(scrape /metrics 2>/dev/null || true)
  grep -q '^qianzhi_database_up 1$' <<<"$body" && break
  sleep 0.2
done
grep -q '^qianzhi_database_up 1$' <<<"$body" || {
  echo "no scrape with the database read:"; echo "$body"; cat "$tmp/run.log"; exit 1; }
for family in qianzhi_build_info qianzhi_job_rows_delivered_total qianzhi_job_batches_pending \
  qianzhi_job_last_success_timestamp_seconds qianzhi_provider_calls_today \
  qianzhi_provider_billed_calls_today qianzhi_provider_budget_left; do
  grep -q "^# TYPE $family " <<<"$body" || { echo "$family missing:"; echo "$body"; exit 1; }
done
grep -q '^qianzhi_provider_calls_today{provider="shuidi"} [1-9]' <<<"$body" || {
  echo "the demo's credit-query calls are not in the scrape:"; echo "$body"; exit 1; }
promtool check metrics <<<"$body"
echo "metrics: $(grep -c '^qianzhi_' <<<"$body") samples, promtool check metrics clean"
