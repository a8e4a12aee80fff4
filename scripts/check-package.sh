#!/usr/bin/env bash
# Checks what scripts/package.sh built. Each check installs the Debian packages it needs.
#
#   scripts/check-package.sh glibc [BINARY...] no dynamic symbol needs a glibc newer than 2.17
#                                              (objdump -T), and only glibc's own libraries
#                                              are needed (no OpenSSL, no libsqlite3, no libgcc_s:
#                                              Zig links its own unwinder)
#   scripts/check-package.sh qemu BINARY       the aarch64 binary runs `qianzhi demo` to the end
#                                              under qemu-user (the demo's simulators run in the
#                                              same process, so no binfmt registration is needed)
#   scripts/check-package.sh deb FILE.deb      contents; then installed on this machine: the
#                                              qianzhi user, file modes, the config kept over a
#                                              reinstall, systemd-analyze verify; then purged
#   scripts/check-package.sh rpm FILE.rpm      contents, config and owner, scriptlets, requires;
#                                              on a matching machine rpm -i, the user, modes,
#                                              the config kept over a reinstall, then rpm -e
#   scripts/check-package.sh all               all four on target/packages/ and the two binaries
# Without a BINARY, glibc checks the x86_64 and aarch64 release builds that exist in the target
# directory (CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_GLIBC=2.17

need() { # need COMMAND DEBIAN-PACKAGE...
  local cmd=$1
  shift
  command -v "$cmd" >/dev/null && return
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The objdump that reads the binary's architecture.
objdump_for() {
  case "$(file -b "$1")" in
    *aarch64* | *ARM\ aarch64*) need aarch64-linux-gnu-objdump binutils-aarch64-linux-gnu; echo aarch64-linux-gnu-objdump ;;
    *) need objdump binutils; echo objdump ;;
  esac
}

check_glibc() {
  need file file
  local bin od newest needed
  for bin in "$@"; do
    [ -f "$bin" ] || fail "$bin does not exist"
    od=$(objdump_for "$bin")
    newest=$("$od" -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
    [ -n "$newest" ] || fail "$bin: no GLIBC_ symbol versions found (not a glibc binary?)"
    if [ "$(printf '%s\n%s\n' "$newest" "$MAX_GLIBC" | sort -V | tail -n1)" != "$MAX_GLIBC" ]; then
      # Each symbol that needs more, with its version.
      "$od" -T "$bin" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /GLIBC_/) { v = $i; gsub(/[()]|GLIBC_/, "", v); print v, $NF } }' |
        sort -uV | while read -r v sym; do
          [ "$(printf '%s\n%s\n' "$v" "$MAX_GLIBC" | sort -V | tail -n1)" = "$MAX_GLIBC" ] || echo "  $sym needs GLIBC_$v" >&2
        done
      fail "$bin needs glibc $newest (at most $MAX_GLIBC)"
    fi
    needed=$("$od" -p "$bin" | awk '/NEEDED/ { print $2 }' | sort | tr '\n' ' ')
    for lib in $needed; do
      case "$lib" in
        libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux-*.so.*) ;;
        *) fail "$bin needs $lib (only glibc's own libraries are allowed)" ;;
      esac
    done
    echo "$bin: $(file -b "$bin" | cut -d, -f1-2); newest symbol version GLIBC_$newest (at most $MAX_GLIBC); needs $needed"
  done
}

check_qemu() {
  local bin=$1 dir accepted
  [ -f "$bin" ] || fail "$bin does not exist"
  # qemu-user-static from Debian; the aarch64 glibc from its cross package.
  need qemu-aarch64-static qemu-user-static
  [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libc6-arm64-cross >/dev/null
  }
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' RETURN
  cp "$bin" "$dir/qianzhi"
  (cd "$dir" && qemu-aarch64-static -L /usr/aarch64-linux-gnu ./qianzhi --version)
  # The demo delivers to its simulators and prints a summary; it must get to the end.
  (cd "$dir" && timeout 900 qemu-aarch64-static -L /usr/aarch64-linux-gnu ./qianzhi demo --dir demo) > "$dir/demo.out" 2>&1 ||
    { cat "$dir/demo.out" >&2; fail "qianzhi demo under qemu-aarch64"; }
  grep -q 'config written to' "$dir/demo.out" || { cat "$dir/demo.out" >&2; fail "demo summary incomplete"; }
  accepted=$(grep -o 'simulator: [0-9]* records accepted' "$dir/demo.out") || { cat "$dir/demo.out" >&2; fail "demo delivered nothing"; }
  echo "aarch64 under qemu-aarch64-static: qianzhi demo ran to the end ($accepted)"
}

check_deb() {
  local deb=$1 had_user=false tree
  [ -f "$deb" ] || fail "$deb does not exist"
  tree=$(dpkg-deb -c "$deb")
  echo "$tree"
  for f in ./usr/bin/qianzhi ./usr/lib/systemd/system/qianzhi.service ./usr/lib/sysusers.d/qianzhi.conf \
    ./etc/qianzhi/config.toml ./usr/share/qianzhi/schemas/gdzw/accept.toml ./usr/share/qianzhi/sql/postgres/001_control.sql \
    ./usr/share/qianzhi/sql/mysql/001_control.sql ./usr/share/qianzhi/sql/sqlite/001_control.sql; do
    grep -q " $f\$" <<<"$tree" || fail "$deb has no $f"
  done
  dpkg-deb -f "$deb" Package Version Architecture Depends
  local control
  control=$(mktemp -d)
  dpkg-deb -e "$deb" "$control/DEBIAN"
  grep -qx '/etc/qianzhi/config.toml' "$control/DEBIAN/conffiles" || fail "config.toml is not a conffile"
  rm -rf "$control"
  [ "$(dpkg --print-architecture)" = "$(dpkg-deb -f "$deb" Architecture)" ] || {
    echo "not installing a $(dpkg-deb -f "$deb" Architecture) package on $(dpkg --print-architecture)"
    return
  }
  dpkg -s qianzhi >/dev/null 2>&1 && fail "qianzhi is installed on this machine already; not touching it"
  getent passwd qianzhi >/dev/null && had_user=true
  need systemd-analyze systemd
  dpkg -i "$deb"
  getent passwd qianzhi || fail "no qianzhi user after install"
  [ "$(stat -c '%U:%G %a' /etc/qianzhi/config.toml)" = "root:qianzhi 640" ] ||
    fail "/etc/qianzhi/config.toml is $(stat -c '%U:%G %a' /etc/qianzhi/config.toml)"
  [ "$(stat -c '%U:%G %a' /etc/qianzhi)" = "root:qianzhi 750" ] || fail "/etc/qianzhi is $(stat -c '%U:%G %a' /etc/qianzhi)"
  /usr/bin/qianzhi --version
  grep -q '^ExecStart=/usr/bin/qianzhi run$' /usr/lib/systemd/system/qianzhi.service || fail "unit does not run /usr/bin/qianzhi"
  out=$(systemd-analyze verify /usr/lib/systemd/system/qianzhi.service 2>&1 || true)
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
  echo "systemd-analyze verify /usr/lib/systemd/system/qianzhi.service: clean"
  # An edited config survives a reinstall (an upgrade to the same version).
  echo '# edited by check-package.sh' >>/etc/qianzhi/config.toml
  dpkg -i "$deb"
  tail -n1 /etc/qianzhi/config.toml | grep -q 'edited by check-package.sh' || fail "reinstall replaced the edited config"
  dpkg --purge qianzhi
  [ ! -e /usr/bin/qianzhi ] && [ ! -e /etc/qianzhi/config.toml ] && [ ! -e /usr/lib/systemd/system/qianzhi.service ] ||
    fail "purge left files behind"
  # The package keeps its user (as Debian packages do); this throwaway install removes it.
  $had_user || userdel qianzhi
  echo "deb: installed, user qianzhi, modes, conffile kept, unit verified, purged"
}

check_rpm() {
  local rpm=$1 list
  [ -f "$rpm" ] || fail "$rpm does not exist"
  need rpm rpm
  rpm -qip "$rpm" 2>/dev/null | grep -E '^(Name|Version|Architecture|Size|Summary)'
  list=$(rpm -qlvp "$rpm" 2>/dev/null)
  echo "$list"
  for f in /usr/bin/qianzhi /usr/lib/systemd/system/qianzhi.service /usr/lib/sysusers.d/qianzhi.conf \
    /etc/qianzhi/config.toml /usr/share/qianzhi/schemas/gdzw/accept.toml /usr/share/qianzhi/sql/postgres/001_control.sql; do
    grep -q " $f\$" <<<"$list" || fail "$rpm has no $f"
  done
  grep -E ' /etc/qianzhi/config.toml$' <<<"$list" | grep -q '^-rw-r-----.* root *qianzhi ' ||
    fail "config.toml is not root:qianzhi 0640"
  rpm -qcp "$rpm" 2>/dev/null | grep -qx /etc/qianzhi/config.toml || fail "config.toml is not a %config file"
  rpm -qp --scripts "$rpm" 2>/dev/null | grep -q 'useradd -r -g qianzhi' || fail "no pre-install scriptlet creating the user"
  rpm -qp --requires "$rpm" 2>/dev/null | tr '\n' ' '
  echo
  # Installed on this machine too when the architecture matches: rpm's own database, so dpkg is
  # not involved; --nodeps because Debian's rpm database knows no glibc package.
  local arch had_user=false
  arch=$(rpm -qp --qf '%{ARCH}' "$rpm" 2>/dev/null)
  if [ "$arch" != "$(uname -m)" ]; then
    echo "rpm: files, %config(noreplace) owned root:qianzhi, user scriptlet present (not installing $arch on $(uname -m))"
    return
  fi
  rpm -q qianzhi >/dev/null 2>&1 && fail "qianzhi is installed in this machine's rpm database already; not touching it"
  [ -e /usr/bin/qianzhi ] && fail "/usr/bin/qianzhi exists already; not touching it"
  getent passwd qianzhi >/dev/null && had_user=true
  rpm -i --nodeps "$rpm" 2>&1 | grep -v '^rpm: ' || true
  getent passwd qianzhi || fail "no qianzhi user after rpm -i"
  [ "$(stat -c '%U:%G %a' /etc/qianzhi/config.toml)" = "root:qianzhi 640" ] ||
    fail "/etc/qianzhi/config.toml is $(stat -c '%U:%G %a' /etc/qianzhi/config.toml)"
  [ "$(stat -c '%U:%G %a' /etc/qianzhi)" = "root:qianzhi 750" ] || fail "/etc/qianzhi is $(stat -c '%U:%G %a' /etc/qianzhi)"
  /usr/bin/qianzhi --version
  echo '# edited by check-package.sh' >>/etc/qianzhi/config.toml
  rpm -i --nodeps --replacepkgs "$rpm" 2>&1 | grep -v '^rpm: ' || true
  tail -n1 /etc/qianzhi/config.toml | grep -q 'edited by check-package.sh' || fail "reinstall replaced the edited config"
  rpm -e qianzhi 2>&1 | grep -v '^rpm: ' || true
  [ ! -e /usr/bin/qianzhi ] && [ ! -e /usr/lib/systemd/system/qianzhi.service ] || fail "rpm -e left files behind"
  # The edited config stays as config.toml.rpmsave, as rpm does; this throwaway install removes it.
  rm -f /etc/qianzhi/config.toml.rpmsave
  rmdir /etc/qianzhi
  $had_user || userdel qianzhi
  echo "rpm: files, %config(noreplace) owned root:qianzhi, user scriptlet; installed, config kept, erased"
}

target_dir() {
  cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

case "${1:-}" in
  glibc)
    shift
    if [ $# -eq 0 ]; then
      t=$(target_dir)
      for a in x86_64 aarch64; do
        [ -f "$t/$a-unknown-linux-gnu/release/qianzhi" ] && set -- "$@" "$t/$a-unknown-linux-gnu/release/qianzhi"
      done
      [ $# -gt 0 ] || fail "no release build in $t: run scripts/package.sh first"
    fi
    check_glibc "$@"
    ;;
  qemu) check_qemu "$2" ;;
  deb) check_deb "$2" ;;
  rpm) check_rpm "$2" ;;
  all)
    t=$(target_dir)
    check_glibc "$t/x86_64-unknown-linux-gnu/release/qianzhi" "$t/aarch64-unknown-linux-gnu/release/qianzhi"
    check_qemu "$t/aarch64-unknown-linux-gnu/release/qianzhi"
    check_deb "$(ls "$t"/packages/qianzhi_*_amd64.deb | tail -n1)"
    check_rpm "$(ls "$t"/packages/qianzhi-*.x86_64.rpm | tail -n1)"
    check_rpm "$(ls "$t"/packages/qianzhi-*.aarch64.rpm | tail -n1)"
    ;;
  *) sed -n '2,19p' "$0"; exit 2 ;;
esac
