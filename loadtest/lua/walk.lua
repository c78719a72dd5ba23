-- walk: touches keys FROM .. FROM+COUNT-1 (env) in order, once each, then repeats key FROM:
-- the memory scenario's way of growing the limiter table by exactly COUNT keys. Run it with -t1
-- (one thread walks the whole range); memory.sh stops wrk (SIGINT) once tollgate tracks them all.
local from = tonumber(os.getenv("FROM") or "1")
local count = tonumber(os.getenv("COUNT") or "100000")
local sent = 0

function request()
  local i = sent < count and from + sent or from
  sent = sent + 1
  return wrk.format("GET", "/", { ["X-Api-Key"] = string.format("key-%07d", i) })
end
