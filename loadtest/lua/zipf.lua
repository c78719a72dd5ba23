-- zipf: the key of each request follows a Zipf law over KEYS keys (env, default 100000) with
-- exponent ZIPF_S (default 1.1): key of rank k is drawn with probability k^-s / H(KEYS, s).
-- The CDF is computed once per thread; a request costs one math.random() and a binary search.
local nkeys = tonumber(os.getenv("KEYS") or "100000")
local s = tonumber(os.getenv("ZIPF_S") or "1.1")
local cdf, reqs = {}, {}

function init(args)
  local addr = tostring({}):match("0x(%x+)")
  math.randomseed(os.time() + (addr and tonumber(addr, 16) % 1000003 or 0))
  local sum = 0
  for k = 1, nkeys do
    sum = sum + k ^ -s
    cdf[k] = sum
    reqs[k] = wrk.format("GET", "/", { ["X-Api-Key"] = string.format("key-%07d", k) })
  end
  for k = 1, nkeys do cdf[k] = cdf[k] / sum end
end

function request()
  local u, lo, hi = math.random(), 1, nkeys
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return reqs[lo]
end
