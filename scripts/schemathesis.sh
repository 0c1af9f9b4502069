#!/usr/bin/env bash
# The HTTP API against its own OpenAPI document, with schemathesis: a real `reins serve` on a
# temporary data dir, a token holding every role, a small fleet so that ids resolve, then a
# bounded run. Fails on any server error, any status code or content type the document does not
# declare, and any response that does not match its schema.
#
#   scripts/schemathesis.sh [REINS_BINARY]     (default: target/debug/reins, built if missing)
#
# Installs schemathesis into .venv-schemathesis (a virtualenv of its own) on first use.
# ST_MAX_EXAMPLES (default 25) and ST_MAX_TIME (seconds, default 180) bound the run.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/debug/reins}
[ -x "$BIN" ] || cargo build --locked
VENV=.venv-schemathesis
if [ ! -x "$VENV/bin/st" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet 'schemathesis==4.32.5'
fi

DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
"$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$DATA/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do
  curl -sf "$BASE/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "$BASE/readyz" >/dev/null || { echo "reins serve did not start:"; cat "$DATA/server.log"; exit 1; }

TOKEN=$("$BIN" token mint --data-dir "$DATA" --agent ops \
  --roles admin,auditor,policy_admin,operator,approver,compliance_officer,pep)
AGENT=$("$BIN" token mint --data-dir "$DATA" --agent bot)
call() { curl -sf -o /dev/null -H 'Content-Type: application/json' "$@"; }
call -X PUT "$BASE/v1/tools/search.web" -H "Authorization: Bearer $TOKEN" \
  -d '{"description": "Search the web", "risk": "low", "category": "web"}'
call -X PUT "$BASE/v1/tools/payments.refund" -H "Authorization: Bearer $TOKEN" \
  -d '{"description": "Refund", "risk": "high", "category": "payments"}'
call -X PUT "$BASE/v1/agents/bot" -H "Authorization: Bearer $TOKEN" \
  -d '{"name": "Bot", "owner": "team", "risk_tier": "limited", "tools": ["search.web", "payments.refund"]}'
call "$BASE/v1/decisions" -H "Authorization: Bearer $AGENT" \
  -d '{"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}}'
call "$BASE/v1/decisions" -H "Authorization: Bearer $AGENT" \
  -d '{"action": "invoke", "resource": {"type": "Tool", "id": "payments.refund"}, "context": {"args": {"amount": 10}}}'

"$VENV/bin/st" run "$BASE/openapi.json" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${ST_MAX_EXAMPLES:-25}" --max-time "${ST_MAX_TIME:-180}" \
  --seed 1 --generation-database none --no-color \
  --suppress-health-check all \
  --report junit --report-dir "target/schemathesis"
