#!/usr/bin/env bash
# Database failover with real MariaDB: two DB hosts and a Pandora server host on loopback.
# Starts two MariaDB servers (read-only at boot, binary log, GTID strict mode) in a temporary
# directory, their agents and a server agent; shows the primary being chosen, kills its mysqld,
# shows the replica promoted and the old primary coming back as a replica, then a planned
# switchover back to it, asked on the server host. Stops all on exit.
# Needs: mariadb-server (apt-get install -y mariadb-server), root or a user that can run it.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in mariadbd mariadb-install-db mariadb; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || { echo "needs $tool: apt-get install -y mariadb-server" >&2; exit 1; }
done
cargo build --quiet --release
bin=$PWD/target/release/gossip-ha
work=$(mktemp -d)
pids=()
declare -A mysqld
cleanup() {
  for pid in "${pids[@]}" "${mysqld[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_mysqld() { # name server_id port
  local dir=$work/$1
  # ROW with full images (Pandora's manual says MIXED): an exact split-brain merge needs them.
  /usr/sbin/mariadbd --no-defaults --user=root --datadir="$dir/data" --socket="$dir/sock" --port="$3" \
    --bind-address=127.0.0.1 --tmpdir="$dir" --log-error="$dir/error.log" --server-id="$2" \
    --log-bin="$dir/data/binlog" --relay-log="$dir/data/relay" --binlog-format=ROW --binlog-row-image=FULL \
    --log-slave-updates=ON --gtid-strict-mode=ON --read-only=ON --skip-name-resolve \
    --innodb-buffer-pool-size=32M --innodb-log-file-size=8M --performance-schema=OFF 2>/dev/null &
  mysqld[$1]=$!
  for _ in $(seq 100); do mariadb --socket="$dir/sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return; sleep 0.1; done
  echo "mariadbd $1 did not start" >&2; exit 1
}
new_db() { # name server_id port
  mkdir -p "$work/$1"
  mariadb-install-db --no-defaults --user=root --datadir="$work/$1/data" --tmpdir="$work/$1" \
    --auth-root-authentication-method=socket --skip-test-db >/dev/null
  start_mysqld "$@"
  mariadb --socket="$work/$1/sock" -uroot -e "SET sql_log_bin=0;
    CREATE USER gha@'127.0.0.1' IDENTIFIED BY 'gha-pass'; GRANT ALL ON *.* TO gha@'127.0.0.1';
    CREATE USER repl@'127.0.0.1' IDENTIFIED BY 'repl-pass'; GRANT REPLICATION SLAVE ON *.* TO repl@'127.0.0.1';"
}
agent() { # name port extra args...
  local name=$1 port=$2; shift 2
  "$bin" run --node-name "$name" --listen "127.0.0.1:$port" --seeds 127.0.0.1:18001 \
    --server-threshold 1 --cluster-id demo-db --socket "$work/$name.sock" --state-dir "$work/state-$name" \
    "$@" 2>"$work/$name.log" &
  pids+=($!)
}
db_agent() { # name port db_port priority
  GOSSIP_HA_DB__REPLICATION_PASSWORD=repl-pass agent "$1" "$2" --roles db --master 0 \
    --db-url "mysql://gha:gha-pass@127.0.0.1:$3/" --db-advertise "127.0.0.1:$3" \
    --db-priority "$4" --repl-user repl --db-check-interval 0.2
}

new_db dbhost1 1 13306
new_db dbhost2 2 13307
db_agent dbhost1 18001 13306 2
db_agent dbhost2 18002 13307 1
agent pandora1 18003 --roles server --master 1
sleep 4
echo "### a fresh cluster: the first host is primary, the other replicates"
"$bin" status --socket "$work/pandora1.sock"
echo
echo "### kill -9 the primary's mysqld and wait 3 s"
kill -9 "${mysqld[dbhost1]}"; wait "${mysqld[dbhost1]}" 2>/dev/null || true
sleep 3
"$bin" status --socket "$work/pandora1.sock"
echo
echo "### dbhost1's mysqld restarts (read-only at boot) and rejoins as a replica"
start_mysqld dbhost1 1 13306
sleep 2
"$bin" status --socket "$work/pandora1.sock"
echo
echo "### what dbhost2 decided, and why"
"$bin" events --socket "$work/dbhost2.sock"
echo
echo "### planned switchover back to dbhost1, asked on the server host pandora1"
"$bin" switchover --to dbhost1 --socket "$work/pandora1.sock"
sleep 1
"$bin" status --socket "$work/pandora1.sock"
