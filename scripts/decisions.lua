-- wrk script: POST /v1/decisions as a random registered agent for one of its declared tools.
-- Reads $REINS_BENCH_FLEET: one line per agent, "<token> <tool>,<tool>,...".
-- With $REINS_BENCH_BATCH=N, posts /v1/decisions/batch with N requests instead.
local fleet = {}
local batch = tonumber(os.getenv("REINS_BENCH_BATCH") or "0")

function init(args)
  for line in io.lines(os.getenv("REINS_BENCH_FLEET")) do
    local token, tools = line:match("^(%S+) (%S+)$")
    local list = {}
    for tool in tools:gmatch("[^,]+") do list[#list + 1] = tool end
    fleet[#fleet + 1] = { token = token, tools = list }
  end
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8), 16) or 0))
end

local function one(agent)
  local tool = agent.tools[math.random(#agent.tools)]
  return '{"action":"invoke","resource":{"type":"Tool","id":"' .. tool ..
    '"},"context":{"args":{"amount":' .. math.random(1, 90000) .. ',"currency":"EUR"}}}'
end

function request()
  local agent = fleet[math.random(#fleet)]
  local headers = { ["Authorization"] = "Bearer " .. agent.token, ["Content-Type"] = "application/json" }
  if batch > 0 then
    local items = {}
    for i = 1, batch do items[i] = one(agent) end
    return wrk.format("POST", "/v1/decisions/batch", headers, '{"requests":[' .. table.concat(items, ",") .. ']}')
  end
  return wrk.format("POST", "/v1/decisions", headers, one(agent))
end

-- With $REINS_BENCH_REQUESTS=N, each thread stops after N answers (bench.sh's instruction counts).
local limit = tonumber(os.getenv("REINS_BENCH_REQUESTS") or "0")
if limit > 0 then
  local answered = 0
  function response(status, headers, body)
    answered = answered + 1
    if answered >= limit then wrk.thread:stop() end
  end
end

-- The tail wrk's table leaves out, for bench.sh: p99.9 and the slowest answer, in microseconds.
function done(summary, latency, requests)
  io.write(string.format("tail: p99.9 %d max %d\n", latency:percentile(99.9), latency.max))
end
