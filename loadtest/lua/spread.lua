-- spread: every request carries a key chosen uniformly at random among KEYS keys (env, default
-- 100000), so per-key limits are (almost) never hit. KEY_IN=header (X-Api-Key, default) or
-- query (?key=...). Requests are formatted once per thread, so a request costs wrk one
-- math.random() and a table lookup (as in ../shared/bench/lua/spread.lua).
local nkeys = tonumber(os.getenv("KEYS") or "100000")
local key_in = os.getenv("KEY_IN") or "header"
local reqs = {}

function init(args)
  local addr = tostring({}):match("0x(%x+)")
  math.randomseed(os.time() + (addr and tonumber(addr, 16) % 1000003 or 0))
  for i = 1, nkeys do
    local key = string.format("key-%07d", i)
    if key_in == "query" then
      reqs[i] = wrk.format("GET", "/?key=" .. key)
    else
      reqs[i] = wrk.format("GET", "/", { ["X-Api-Key"] = key })
    end
  end
end

function request()
  return reqs[math.random(nkeys)]
end
