#!/usr/bin/env bash
# Decision throughput with OpenTelemetry export off and on, measured in the same run.
#
# Builds in release mode and starts Reins twice on fresh data dirs with the same fleet (AGENTS
# agents, 10 tools): once with no OTEL_* variables (export off), once exporting traces and metrics
# over OTLP/HTTP to a local sink that accepts and discards them (python3's http.server). wrk drives
# POST /v1/decisions at CONCURRENCY connections; the runs alternate (off, on, sampled, twice) so
# machine noise hits all alike. `sampled` exports too, with OTEL_TRACES_SAMPLER=traceidratio at
# 10%. Prints decisions/s and p99 per run and the ratios to "off". The sink runs on the same cores.
#
#   scripts/bench_telemetry.sh      # DURATION=8s AGENTS=100 CONCURRENCY=16
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
AGENTS=${AGENTS:-100}
CONCURRENCY=${CONCURRENCY:-16}
PORT=${PORT:-18490}
SINK_PORT=${SINK_PORT:-18491}
BASE="http://127.0.0.1:$PORT"

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; fi
  command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
fi
command -v python3 >/dev/null || { echo "python3 is needed for the OTLP sink" >&2; exit 1; }
cargo build --release --quiet
REINS=./target/release/reins
WORK=$(mktemp -d)
SERVER=""
trap 'kill $SERVER $SINK 2>/dev/null || true; rm -rf "$WORK"' EXIT

# The sink: answers every OTLP/HTTP export with 200 and counts the bytes.
python3 - "$SINK_PORT" > "$WORK/sink.log" 2>&1 <<'PY' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
SINK=$!

start() {  # $1: data dir, $2: "on" to export
  local data=$1
  if [ "$2" = sampled ]; then
    OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.1 \
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
      REINS_LOG=warn $REINS serve --data-dir "$data" --listen "127.0.0.1:$PORT" 2>>"$WORK/server.log" &
  elif [ "$2" = on ]; then
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
      REINS_LOG=warn $REINS serve --data-dir "$data" --listen "127.0.0.1:$PORT" 2>>"$WORK/server.log" &
  else
    REINS_LOG=warn $REINS serve --data-dir "$data" --listen "127.0.0.1:$PORT" 2>>"$WORK/server.log" &
  fi
  SERVER=$!
  for _ in $(seq 1 200); do curl -fs "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
}

fleet() {  # registers the fleet in $1 and writes $1/fleet.txt
  local data=$1 admin
  admin=$($REINS token mint --agent bench-admin --roles admin --data-dir "$data" --ttl 2h)
  put() { curl -fs -X PUT "$BASE$1" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' -d "$2" >/dev/null; }
  for t in $(seq 0 9); do put "/v1/tools/tool-$t" "{\"description\":\"t\",\"risk\":\"low\",\"category\":\"c\"}"; done
  : > "$data/fleet.txt"
  for a in $(seq 0 $((AGENTS - 1))); do
    put "/v1/agents/agent-$a" "{\"name\":\"a\",\"owner\":\"team\",\"risk_tier\":\"limited\",\"tools\":[\"tool-$((a % 10))\",\"tool-$(((a + 3) % 10))\"]}"
    echo "$($REINS token mint --agent "agent-$a" --data-dir "$data" --ttl 2h) tool-$((a % 10)),tool-$(((a + 3) % 10))" >> "$data/fleet.txt"
  done
}

measure() {  # prints "rps p99"
  local out
  out=$(REINS_BENCH_FLEET="$1/fleet.txt" wrk -t2 -c"$CONCURRENCY" -d"$DURATION" --latency -s scripts/decisions.lua "$BASE")
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1 == "99%" {print $2}')"
}

declare -A TOTAL=([off]=0 [on]=0 [sampled]=0)
printf '%-8s %-6s %12s %10s\n' "round" "export" "decisions/s" "p99"
for round in 1 2; do
  for mode in off on sampled; do
    data="$WORK/$mode-$round"
    mkdir -p "$data"
    start "$data" "$mode"
    fleet "$data"
    read -r rps p99 < <(measure "$data")
    kill -TERM "$SERVER"; wait "$SERVER" || true
    printf '%-8s %-6s %12s %10s\n' "$round" "$mode" "$rps" "$p99"
    TOTAL[$mode]=$(awk -v a="${TOTAL[$mode]}" -v b="$rps" 'BEGIN {print a + b}')
  done
done
echo "export on / off: $(awk -v on="${TOTAL[on]}" -v off="${TOTAL[off]}" 'BEGIN {printf "%.2f", on / off}')"
echo "export on, 10% of traces sampled / off: $(awk -v on="${TOTAL[sampled]}" -v off="${TOTAL[off]}" 'BEGIN {printf "%.2f", on / off}')"
if grep -q "export failed" "$WORK/server.log"; then echo "warning: an export failed during the run" >&2; fi
