#!/usr/bin/env bash
# Builds the qianzhi packages: for each architecture one release binary, linked with Zig
# (cargo-zigbuild) against glibc 2.17, so it runs on any Linux with glibc 2.17 or newer (Kylin V10
# and UOS 20 have 2.28), then a .deb (cargo-deb) and an .rpm (cargo-generate-rpm) around it. Installs the tools it
# needs, at pinned versions, when they are missing. Times every step.
#
# Usage: scripts/package.sh [--binary-only] [x86_64] [aarch64]     (default: both architectures)
#   --binary-only   build the binaries only (what CI's glibc check needs), no packages
# Output: $CARGO_TARGET_DIR/packages/ (default target/packages/): the packages, times.txt.
# Checks: scripts/check-package.sh (glibc symbols, aarch64 demo under qemu, deb and rpm contents).
set -euo pipefail
cd "$(dirname "$0")/.."

ZIGLANG_VERSION=0.15.2
CARGO_ZIGBUILD_VERSION=0.24.0
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
GLIBC=2.17

binary_only=false
arches=()
for a in "$@"; do
  case "$a" in
    --binary-only) binary_only=true ;;
    x86_64 | aarch64) arches+=("$a") ;;
    *) echo "unknown argument: $a (usage: $0 [--binary-only] [x86_64] [aarch64])" >&2; exit 2 ;;
  esac
done
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
out="$target_dir/packages"
mkdir -p "$out"

timed() {
  local label=$1 t0
  shift
  t0=$(date +%s)
  "$@"
  echo "$label: $(($(date +%s) - t0)) s" | tee -a "$out/times.txt"
}

# Zig and cargo-zigbuild come as wheels from PyPI (prebuilt, seconds to install); cargo-deb and
# cargo-generate-rpm are compiled by cargo install (minutes, once).
install_tools() {
  if [ "$(python3 -m ziglang version 2>/dev/null)" != "$ZIGLANG_VERSION" ]; then
    python3 -m pip install -q "ziglang==$ZIGLANG_VERSION"
  fi
  if ! cargo-zigbuild --version 2>/dev/null | grep -qx "cargo-zigbuild $CARGO_ZIGBUILD_VERSION"; then
    python3 -m pip install -q "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  fi
  for a in "${arches[@]}"; do
    rustup target list --installed | grep -qx "$a-unknown-linux-gnu" || rustup target add "$a-unknown-linux-gnu"
  done
  $binary_only && return
  if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
    cargo install --locked "cargo-deb@$CARGO_DEB_VERSION"
  fi
  if ! cargo generate-rpm --version 2>/dev/null | grep -qx "cargo-generate-rpm $CARGO_GENERATE_RPM_VERSION"; then
    cargo install --locked "cargo-generate-rpm@$CARGO_GENERATE_RPM_VERSION"
  fi
}

timed "tools" install_tools

for a in "${arches[@]}"; do
  triple="$a-unknown-linux-gnu"
  release="$target_dir/$triple/release"
  # The `.2.17` suffix makes Zig link against glibc 2.17's symbol versions; the output goes to
  # the plain triple's directory.
  timed "build $a (cargo zigbuild --release --target $triple.$GLIBC)" \
    cargo zigbuild --release --locked --target "$triple.$GLIBC"
  ls -l "$release/qianzhi" | tee -a "$out/times.txt"
  $binary_only && continue
  # The shipped unit, with the packaged binary's path (the repository's names /usr/local/bin).
  mkdir -p "$release/package"
  {
    echo "# 由 qianzhi 软件包安装 / installed by the qianzhi package"
    sed 's#/usr/local/bin/qianzhi#/usr/bin/qianzhi#g' systemd/qianzhi.service
  } > "$release/package/qianzhi.service"
  # cargo-deb warns "No usable systemd units found" in packaging/deb/: the unit is an asset
  # instead, and the maintainer scripts get its systemd parts all the same.
  timed "deb $a" cargo deb --no-build --no-strip --target "$triple" --output "$out/"
  # gzip rather than the default zstd payload: rpm older than 4.14 reads only gzip and xz.
  timed "rpm $a" cargo generate-rpm --target "$triple" --payload-compress gzip --output "$out/"
done
$binary_only || ls -l "$out"/*.deb "$out"/*.rpm | tee -a "$out/times.txt"
