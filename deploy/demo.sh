#!/usr/bin/env bash
# Three agents on loopback: watch them elect a server master, lose it to SIGKILL, elect another
# by the server_threshold x 2 rule, and take the old master back. Everything runs in a temporary
# directory and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release
bin=$PWD/target/release/gossip-ha
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() { # name port master seeds
  "$bin" run --node-name "$1" --listen "127.0.0.1:$2" --master "$3" ${4:+--seeds "$4"} \
    --server-threshold 1 --cluster-id demo --socket "$work/$1.sock" 2>"$work/$1.log" &
  pids+=($!)
}
start pandora1 17946 1
start pandora2 17947 5 127.0.0.1:17946
start pandora3 17948 3 127.0.0.1:17946
sleep 2
echo "### three agents, server_threshold 1 s"
"$bin" status --socket "$work/pandora1.sock"
echo
echo "### SIGKILL the master (pandora2), wait 2.5 s"
kill -9 "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true
sleep 2.5
"$bin" status --socket "$work/pandora1.sock"
echo
echo "### pandora2 restarts"
start pandora2 17947 5 127.0.0.1:17946
sleep 1.5
"$bin" status --socket "$work/pandora1.sock"
echo
echo "### what pandora1 decided, and why"
"$bin" events --socket "$work/pandora1.sock"
