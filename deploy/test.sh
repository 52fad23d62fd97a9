#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is missing (MariaDB server,
# client and mariadb-backup, nftables, iproute2, util-linux, HAProxy; cargo-nextest), then runs the whole
# test suite. Extra arguments go to `cargo nextest run` (e.g. `-E 'binary(init)'`).
#
#   bash deploy/test.sh [nextest arguments]       # as root: the tests build network namespaces
#   bash deploy/test.sh --setup-only             # install only (.ci/run does this first)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*"; }

# The database tests start their own MariaDB servers (and the repairs use its dump, binlog and
# backup tools); the partition tests build hosts from network namespaces and cut them with nft.
missing=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
command -v mariadb-install-db >/dev/null 2>&1 || missing+=(mariadb-server)
command -v mariabackup >/dev/null 2>&1 || missing+=(mariadb-backup)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v setsid >/dev/null 2>&1 || missing+=(util-linux)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "the tests need ${missing[*]}: run this as root (it installs them with apt-get)" >&2
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's own service is not wanted: tests start their servers themselves.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

if [ "${1:-}" = --setup-only ]; then
  exit 0
fi
log "tests"
exec cargo nextest run --workspace --locked "$@"
