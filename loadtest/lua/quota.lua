-- quota: KEYS keys (env, default 10) taken in turn; counts answers per wall-clock second and
-- remembers the largest Retry-After of each second, then prints one line per second:
--   SEC <unix s> <2xx> <429> <other> <largest retry-after, or ->
-- for quota-boundary.sh to lay out around the quota's period boundary. Each thread keeps the
-- current second in numbers and appends finished seconds to the string `report` (wrk copies
-- strings and numbers between threads reliably; nested tables crash it).
local nkeys = tonumber(os.getenv("KEYS") or "10")
local threads, reqs, n = {}, {}, 0
report, sec, ok, deny, other, retry = "", -1, 0, 0, 0, -1

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for i = 1, nkeys do
    reqs[i] = wrk.format("GET", "/", { ["X-Api-Key"] = string.format("quota-%03d", i) })
  end
end

function request()
  n = n % nkeys + 1
  return reqs[n]
end

local function line(s, o, d, x, r)
  return string.format("SEC %d %d %d %d %s\n", s, o, d, x, r >= 0 and tostring(r) or "-")
end

function response(status, headers, body)
  local now = os.time()
  if now ~= sec then
    if sec >= 0 then report = report .. line(sec, ok, deny, other, retry) end
    sec, ok, deny, other, retry = now, 0, 0, 0, -1
  end
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 429 then
    deny = deny + 1
    local r = tonumber(headers["retry-after"] or headers["Retry-After"] or "")
    if r and r > retry then retry = r end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(t:get("report"))
    local s = t:get("sec")
    if s >= 0 then
      io.write(line(s, t:get("ok"), t:get("deny"), t:get("other"), t:get("retry")))
    end
  end
end
