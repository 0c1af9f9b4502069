#!/usr/bin/env bash
# The MCP gateway's added latency per tools/call, against calling the MCP server directly, in one
# run (examples/mcp_bench.rs alternates the two, and a bare POST /v1/decisions for the same call).
#
# Builds in release mode, starts Reins on a fresh SQLite data dir with the default policy pack,
# registers one low-risk tool `files.echo` and one agent declaring it, writes a gateway config
# with reins-demo-mcp-server as its stdio server, and runs the driver. Then a clean stop and
# `reins ledger verify`.
#
#   scripts/bench-mcp.sh            # CALLS=5000
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS=${CALLS:-5000}
PORT=${PORT:-18490}
BASE="http://127.0.0.1:$PORT"
cargo build --release --quiet --bin reins --bin reins-demo-mcp-server --example mcp_bench
REINS=./target/release/reins
WORK=$(mktemp -d)
DATA="$WORK/data"
trap 'kill ${SERVER:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT

$REINS serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 200); do curl -fs "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
ADMIN=$($REINS token mint --agent bench-admin --roles admin --data-dir "$DATA" --ttl 2h)
put() { curl -fs -X PUT "$BASE$1" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d "$2" >/dev/null; }
put /v1/tools/files.echo '{"description":"echo","risk":"low","category":"bench"}'
put /v1/agents/mcp-bench '{"name":"mcp bench","owner":"team-bench","risk_tier":"limited","tools":["files.echo"]}'
TOKEN=$($REINS token mint --agent mcp-bench --data-dir "$DATA" --ttl 2h)
cat > "$WORK/gateway.toml" <<TOML
reins_url = "$BASE"
[[servers]]
name = "files"
command = "$PWD/target/release/reins-demo-mcp-server"
TOML

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); $(date -u +%FT%TZ)"
REINS_LOG=warn ./target/release/examples/mcp_bench --reins "$REINS" --upstream ./target/release/reins-demo-mcp-server \
  --config "$WORK/gateway.toml" --url "$BASE" --token "$TOKEN" --calls "$CALLS"

kill -TERM $SERVER; wait $SERVER 2>/dev/null || true
$REINS ledger verify --data-dir "$DATA"
