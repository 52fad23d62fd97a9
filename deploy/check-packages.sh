#!/usr/bin/env bash
# Checks the packages deploy/package.sh builds, as root on a Debian machine (CI runs it; so can a
# developer): installs the .deb, checks files, modes, users, the unit and the installed binary,
# writes a host's config with `gossip-ha init` from Pandora's shipped pandora_server.conf and
# checks it, runs the maintainer scripts against a stand-in systemctl (start/restart rules),
# upgrades to a rebuilt package with the changed config kept, purges, and checks the .rpm with
# rpm. Leaves nothing behind. Builds the packages first when target/packages has none.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT="$TARGET_DIR/packages"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
CONFIG=/etc/gossip-ha/gossip-ha.toml
WORK=$(mktemp -d)
INSTALLED_HERE=no
# A failed check leaves the machine as it found it, so that it can run again.
cleanup() {
  if [ "$INSTALLED_HERE" = yes ]; then
    dpkg --purge gossip-ha >/dev/null 2>&1 || true
    rm -rf /etc/gossip-ha
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '== %s\n' "$*"; }
fail() { echo "check-packages: FAILED: $*" >&2; exit 1; }
expect_mode() { # path mode
  local mode
  mode=$(stat -c %a "$1") || fail "$1 is missing"
  [ "$mode" = "$2" ] || fail "$1 has mode $mode, expected $2"
}

[ "$(id -u)" = 0 ] || fail "run as root: it installs and purges the package"
if dpkg-query -W gossip-ha >/dev/null 2>&1; then
  fail "gossip-ha is already installed here; remove it first (this check purges it at the end)"
fi
# A host set up by hand (a source install) keeps its files: this check writes and removes them.
for path in /etc/gossip-ha /var/lib/gossip-ha; do
  [ ! -e "$path" ] || fail "$path exists (a gossip-ha set up here?): this check would overwrite and remove it"
done
[ -e "$OUT/gossip-ha_${VERSION}-1_amd64.deb" ] || bash deploy/package.sh

log "install the .deb"
INSTALLED_HERE=yes
cp /etc/passwd /etc/group "$WORK/"
dpkg -i "$OUT/gossip-ha_${VERSION}-1_amd64.deb" | tee "$WORK/install.log"
grep -q 'not set up yet' "$WORK/install.log" || fail "postinst did not say the host is not set up"
cmp -s /etc/passwd "$WORK/passwd" && cmp -s /etc/group "$WORK/group" || fail "the package changed users or groups"
echo "users: none added (the agent runs as root)"
expect_mode /usr/bin/gossip-ha 755
expect_mode "$CONFIG" 600
expect_mode /var/lib/gossip-ha 700
expect_mode /usr/lib/systemd/system/gossip-ha.service 644
for file in /usr/share/doc/gossip-ha/README.md /usr/share/doc/gossip-ha/examples/mariadb-gossip-ha.cnf \
  /usr/share/doc/gossip-ha/examples/pandora1.toml /usr/share/man/man1/gossip-ha.1.gz \
  /usr/share/man/man1/gossip-ha-init.1.gz /usr/share/bash-completion/completions/gossip-ha \
  /usr/share/zsh/vendor-completions/_gossip-ha; do
  [ -s "$file" ] || fail "$file is missing"
done
dpkg-query -W -f='${Conffiles}\n' gossip-ha | grep -q "$CONFIG" || fail "$CONFIG is not a conffile"
echo "files and modes: as expected; $CONFIG is a conffile"

if systemd-analyze verify /usr/lib/systemd/system/gossip-ha.service >"$WORK/verify.log" 2>&1; then
  echo "unit: systemd-analyze verify passed"
elif grep -qiE 'gossip-ha.service' "$WORK/verify.log" && ! grep -qiE 'Failed to (connect|initialize)|not booted|No such file or directory.*(bus|private)' "$WORK/verify.log"; then
  cat "$WORK/verify.log" >&2
  fail "systemd-analyze verify found problems in the unit"
else
  echo "unit: systemd-analyze verify skipped, it cannot run here (no systemd as PID 1): $(head -1 "$WORK/verify.log")"
fi
grep -q '^ProtectSystem=full' /usr/lib/systemd/system/gossip-ha.service || fail "the unit lost its hardening"

log "the installed binary"
installed=$(/usr/bin/gossip-ha --version)
[ "$installed" = "gossip-ha $VERSION" ] || fail "--version says '$installed'"
echo "$installed"
newest=$(objdump -T /usr/bin/gossip-ha | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
[ "$(printf '%s\n2.28\n' "$newest" | sort -V | tail -1)" = 2.28 ] || fail "the binary needs GLIBC_$newest"
echo "glibc: newest symbol version GLIBC_$newest (<= GLIBC_2.28)"

log "gossip-ha init from the shipped pandora_server.conf, then check-config"
install -m 600 tests/fixtures/pandora_server.conf "$WORK/pandora_server.conf"
gossip-ha certs init-ca --dir "$WORK/ca" >/dev/null
gossip-ha certs issue --ca-dir "$WORK/ca" --name dbhost1 --ip 198.18.0.1 --role db --role server \
  --out /etc/gossip-ha/tls >/dev/null
gossip-ha init --pandora-server-conf "$WORK/pandora_server.conf" --roles server,db --name dbhost1 \
  --address 198.18.0.1
gossip-ha check-config --config "$CONFIG" >"$WORK/effective.toml"
grep -q '^master = 1$' "$WORK/effective.toml" || fail "check-config did not import master from Pandora's file"
echo "check-config: passed"

log "maintainer scripts against a stand-in systemctl (start and restart rules)"
check_postinst() { # description, config (example|setup|refused), active (yes|no), old version, expected calls
  local dir="$WORK/m" calls
  rm -rf "$dir" && mkdir -p "$dir/bin" "$dir/etc"
  if [ "$2" = example ]; then cp /usr/share/gossip-ha/gossip-ha.toml.example "$dir/etc/gossip-ha.toml"
  else cp "$CONFIG" "$dir/etc/gossip-ha.toml" && cp -a /etc/gossip-ha/tls "$dir/etc/"; fi
  # A config the new version refuses: the running agent is kept, not restarted into a loop.
  [ "$2" != refused ] || echo 'no_such_key = 1' >>"$dir/etc/gossip-ha.toml"
  printf '#!/bin/sh\necho "$*" >>%s/calls\n[ "$1" != is-active ] || [ %s = yes ]\n' "$dir" "$3" >"$dir/bin/systemctl"
  chmod 755 "$dir/bin/systemctl"
  : >"$dir/calls"
  # A mount namespace where systemd seems to run and the config is the case's own.
  unshare -m sh -c "mount -t tmpfs none /run && mkdir -p /run/systemd/system \
    && mount --bind '$dir/etc' /etc/gossip-ha && PATH='$dir/bin':\$PATH sh deploy/.build/debian/postinst configure '$4'" >/dev/null
  calls=$({ grep -v -e daemon-reload -e is-active "$dir/calls" || true; } | tr '\n' ' ' | sed 's/ $//')
  [ "$calls" = "$5" ] || fail "$1: systemctl was asked '$calls', expected '$5'"
  echo "$1: ${5:-no start or restart}"
}
check_postinst "first install" example no "" ""
check_postinst "upgrade, config still the example, agent running" example yes "$VERSION-1" ""
check_postinst "upgrade, host set up, agent running" setup yes "$VERSION-1" "restart gossip-ha.service"
check_postinst "upgrade, host set up, agent stopped" setup no "$VERSION-1" ""
check_postinst "upgrade, config refused by the new version, agent running" refused yes "$VERSION-1" ""

log "upgrade to a rebuilt package; the changed config is kept"
echo "# changed by the operator before the upgrade" >>"$CONFIG"
bash deploy/package.sh --revision 2 >/dev/null
dpkg -i "$OUT/gossip-ha_${VERSION}-2_amd64.deb"
[ "$(dpkg-query -W -f='${Version}' gossip-ha)" = "$VERSION-2" ] || fail "not upgraded"
grep -q 'changed by the operator' "$CONFIG" || fail "the upgrade replaced the changed config"
gossip-ha check-config --config "$CONFIG" >/dev/null
echo "upgrade: $VERSION-2 installed, config kept"

log "purge: nothing left but what the operator wrote"
dpkg --purge gossip-ha
for gone in /usr/bin/gossip-ha "$CONFIG" /var/lib/gossip-ha /usr/lib/systemd/system/gossip-ha.service /usr/share/gossip-ha; do
  [ ! -e "$gone" ] || fail "$gone is still there after purge"
done
left=$(find /etc/gossip-ha -type f | sort | tr '\n' ' ')
[ "$left" = "/etc/gossip-ha/tls/ca.pem /etc/gossip-ha/tls/cert.pem /etc/gossip-ha/tls/key.pem " ] \
  || fail "after purge /etc/gossip-ha holds: $left"
echo "purge: only the operator's TLS files are left ($left)"
rm -rf /etc/gossip-ha

log "the .rpm"
if ! command -v rpm >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm </dev/null >/dev/null
fi
RPM="$OUT/gossip-ha-${VERSION}-1.x86_64.rpm"
rpm -qpl "$RPM" | tee "$WORK/rpm-files"
for file in /usr/bin/gossip-ha "$CONFIG" /usr/lib/systemd/system/gossip-ha.service /usr/share/man/man1/gossip-ha.1.gz; do
  grep -qx "$file" "$WORK/rpm-files" || fail "the .rpm lacks $file"
done
rpm -qpc "$RPM" | grep -qx "$CONFIG" || fail "$CONFIG is not %config in the .rpm"
rpm -qp --scripts "$RPM" | tee "$WORK/rpm-scripts" | grep -E '^(postinstall|preuninstall|postuninstall) scriptlet'
grep -q 'gossip_ha_configure' "$WORK/rpm-scripts" || fail "the .rpm's scripts lack the configure step"
echo "rpm requires: $(rpm -qp --requires "$RPM" | grep -o "GLIBC_[0-9.]*" | sort -uV | tr "\n" " ")"
# A scratch root has no /bin/sh for the scriptlets, and no package database for the
# dependencies: the files alone are installed there.
rpm -i --root "$WORK/root" --nodeps --noscripts "$RPM"
expect_mode "$WORK/root/usr/bin/gossip-ha" 755
expect_mode "$WORK/root$CONFIG" 600
"$WORK/root/usr/bin/gossip-ha" --version >/dev/null
echo "rpm: installed into a scratch root (no scriptlets there), files and modes as expected"

log "sizes"
ls -l "$OUT"/*.deb "$OUT"/*.rpm | awk '{print $5, $NF}'
echo "check-packages: all passed"
