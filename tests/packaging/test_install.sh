#!/usr/bin/env bash
# make install's result, checked in a DESTDIR: files, paths, the config never replaced, the systemd unit.
# Usage: test_install.sh BUILD_DIR  (CTest runs it; exit 77 = the systemd-analyze part skipped)
set -euo pipefail

build=$(cd "$1" && pwd)
tmp=$(mktemp -d /tmp/lbp-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# install PREFIX DESTDIR: what make install runs.
install_to() { DESTDIR="$2" cmake --install "$build" --prefix "$1" >"$tmp/install.log" 2>&1 ||
               { cat "$tmp/install.log"; fail "cmake --install --prefix $1 failed"; }; }

for prefix in /usr/local /usr; do
  d="$tmp/root${prefix//\//_}"
  install_to "$prefix" "$d"
  bin="$d$prefix/sbin/lbproxy" conf="$d/etc/lbproxy/lbproxy.yaml"
  unit="$d$prefix/lib/systemd/system/lbproxy.service"
  [ -x "$bin" ] || fail "no executable $bin"
  [ -f "$conf" ] || fail "no config $conf (prefix $prefix: the config goes to /etc whatever it is)"
  [ -f "$unit" ] || fail "no unit $unit"
  [ -f "$d$prefix/share/doc/lbproxy/lbproxy.reference.yaml" ] || fail "no reference config"
  "$bin" --version | grep -q '^lbproxy ' || fail "$bin --version"
  "$bin" -t -c "$conf" >"$tmp/t.log" 2>&1 || { cat "$tmp/t.log"; fail "the default config does not load"; }

  # The unit runs the installed binary on the default config; reload and stop go through -s.
  grep -qx "ExecStart=$prefix/sbin/lbproxy -c /etc/lbproxy/lbproxy.yaml" "$unit" || fail "ExecStart in $unit"
  grep -qx "ExecReload=$prefix/sbin/lbproxy -s reload -c /etc/lbproxy/lbproxy.yaml" "$unit" || fail "ExecReload"
  grep -qx "ExecStop=-$prefix/sbin/lbproxy -s quit -c /etc/lbproxy/lbproxy.yaml" "$unit" || fail "ExecStop"
  grep -qx "KillSignal=SIGQUIT" "$unit" || fail "KillSignal (a stop must be graceful)"
  pid=$(sed -n 's/^pid_file: *\([^ #]*\).*/\1/p' "$conf")
  [ -n "$pid" ] && grep -qx "PIDFile=$pid" "$unit" || fail "PIDFile= is not the config's pid_file ($pid)"

  # An existing config is kept as it is, even when the new default differs.
  echo "# edited by the admin" >>"$conf"
  install_to "$prefix" "$d"
  tail -n1 "$conf" | grep -qx "# edited by the admin" || fail "a reinstall replaced $conf"
  grep -q "Keeping: .*lbproxy.yaml" "$tmp/install.log" || fail "a reinstall did not say it kept the config"
done
echo "ok: installed files, paths for /usr/local and /usr, the config kept on reinstall"

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze not found (package systemd): the unit file was not verified"
  exit 77
fi
# verify checks that every Exec path is executable: point them into the DESTDIR.
d="$tmp/root_usr_local"
mkdir -p "$tmp/units"
sed "s|/usr/local/sbin/lbproxy|$d/usr/local/sbin/lbproxy|" \
  "$d/usr/local/lib/systemd/system/lbproxy.service" >"$tmp/units/lbproxy.service"
if ! systemd-analyze verify --man=no "$tmp/units/lbproxy.service" >"$tmp/verify.log" 2>&1 ||
   [ -s "$tmp/verify.log" ]; then
  cat "$tmp/verify.log"
  fail "systemd-analyze verify found problems in the unit"
fi
echo "ok: systemd-analyze verify ($(systemd-analyze --version | head -n1))"
