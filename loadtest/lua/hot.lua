-- hot: one key for every request, so with a per-key limit almost every request gets 429.
-- A static request (no request() function) is the cheapest path in wrk.
wrk.headers["X-Api-Key"] = "hot-key"
