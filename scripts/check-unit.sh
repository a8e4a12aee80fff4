#!/usr/bin/env bash
# Checks the shipped systemd unit: `systemd-analyze verify` clean and an exposure score of at most
# 2.0 from `systemd-analyze security --offline=yes`. Usage: scripts/check-unit.sh [path/to/qianzhi]
# (the binary the unit's ExecStart should point at for verify; default target/release/qianzhi or
# target/debug/qianzhi, whichever exists).
set -euo pipefail
cd "$(dirname "$0")/.."
unit=systemd/qianzhi.service
bin="${1:-}"
if [ -z "$bin" ]; then
  for b in target/release/qianzhi target/debug/qianzhi; do [ -x "$b" ] && bin="$b" && break; done
fi
[ -n "$bin" ] || { echo "no qianzhi binary built; run cargo build first"; exit 1; }
command -v systemd-analyze >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify wants the executables to exist: point the copy at the built binary.
sed "s#/usr/local/bin/qianzhi#$(realpath "$bin")#g" "$unit" > "$tmp/qianzhi.service"
out=$(systemd-analyze verify "$tmp/qianzhi.service" 2>&1 || true)
if [ -n "$out" ]; then
  echo "systemd-analyze verify: $out"
  exit 1
fi
# The commented LoadCredential= lines must verify too once a DBA switches them on.
mkdir "$tmp/with-credentials"
sed -e 's/^#LoadCredential=/LoadCredential=/' "$tmp/qianzhi.service" > "$tmp/with-credentials/qianzhi.service"
grep -q '^LoadCredential=gdzw.token:' "$tmp/with-credentials/qianzhi.service"
out=$(systemd-analyze verify "$tmp/with-credentials/qianzhi.service" 2>&1 || true)
if [ -n "$out" ]; then
  echo "systemd-analyze verify (LoadCredential= lines on): $out"
  exit 1
fi
score=$(systemd-analyze security --offline=yes "$tmp/qianzhi.service" 2>/dev/null |
  sed -n 's/.*Overall exposure level for qianzhi.service: \([0-9.]*\).*/\1/p')
echo "systemd unit: verify clean, exposure $score (at most 2.0)"
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }'
