#!/usr/bin/env bash
# idle-conns: IDLE_CONNS (10000) keep-alive connections opened by idle_conns.py (Python asyncio;
# one request each, then held idle), and meanwhile ACTIVE_CONNECTIONS (16) wrk connections of
# spread load on other connections for DURATION seconds. Prints per target the connections held,
# the proxy's RSS before and while holding them (read after the active load; KB per idle
# connection), and whether the active connections were still answered (req/s, p50/p99,
# non-2xx, errors).
# Raises `ulimit -n` to its hard limit (which must cover IDLE_CONNS + 2048). tollgate runs from a
# config with server.max_connections = IDLE_CONNS + 1000 (default 10000) and header_timeout and
# idle_timeout of 5 min: with the default header_timeout (10 s) an idle keep-alive connection is
# closed 10 s after its last request.
# HAProxy reserves two file descriptors per connection (maxconn) and will not start past
# `ulimit -Hn`, so it holds as many idle connections as half that allows less room for the
# active ones (9,784 under a limit of 20,000), and its row says how many; the KB column is per
# connection held.
# Env: IDLE_CONNS (10000) ACTIVE_CONNECTIONS (16) KEYS (1000: few, so tracked keys add little
#      RSS) IDLE_SETTLE (3), plus lib.sh's DURATION WARMUP RATE TARGETS PIN. For "direct", RSS
#      is the upstream nginx's.
source "$(dirname "$0")/lib.sh"
need_tools python3 wrk nginx:nginx-light
tollgate_bin
IDLE_CONNS=${IDLE_CONNS:-10000}
CONNECTIONS=${ACTIVE_CONNECTIONS:-16}
# Seconds between the last idle connection opening and the active load. RSS is read after the
# load: tollgate's connections give back their buffers after 2 s idle, and jemalloc returns freed
# pages to the kernel over its 10 s decay, as it allocates and frees (under the load).
IDLE_SETTLE=${IDLE_SETTLE:-3}
export KEYS=${KEYS:-1000}

hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt $((IDLE_CONNS + 2048)) ]; then
    die "ulimit -Hn is $hard; IDLE_CONNS=$IDLE_CONNS needs $((IDLE_CONNS + 2048))"
fi
ulimit -n "$hard"
# HAProxy's own cap, and the idle connections it is given: room for the active ones beside them.
# (at most what the run needs, however high the limit).
HAPROXY_MAXCONN=$(( ${hard/unlimited/$((2 * IDLE_CONNS + 4096))} / 2 - 100 ))
[ "$HAPROXY_MAXCONN" -gt $((IDLE_CONNS + CONNECTIONS + 200)) ] && HAPROXY_MAXCONN=$((IDLE_CONNS + CONNECTIONS + 200))
haproxy_idle=$((HAPROXY_MAXCONN - CONNECTIONS - 100))

TG_CONFIG="$WORK/tollgate.toml"
CFG_SERVER="max_connections = $((IDLE_CONNS + 1000))
header_timeout = \"5m\"
idle_timeout = \"5m\"" write_config "$TG_CONFIG"
start_targets

table_title "$IDLE_CONNS idle keep-alive connections held, spread load on $CONNECTIONS others"
echo "| target | idle conns open | failed | tollgate_open_connections | RSS before MB | RSS holding MB | KB per idle conn | req/s | p50 µs | p99 µs | non-2xx % | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for t in $TARGETS; do
    pid=$(pid_of_target "$t")
    [ -n "$pid" ] || pid=${PID_OF[upstream]}
    rss0=$(status_kb "$pid" VmRSS)
    n=$IDLE_CONNS
    [ "$t" = haproxy ] && [ "$haproxy_idle" -lt "$n" ] && n=$haproxy_idle
    : >"$WORK/idle-$t.out"
    "${PIN_GEN[@]}" python3 "$LT_DIR/idle_conns.py" "$(port_of "$t")" "$n" $((DURATION + WARMUP + 120)) \
        >"$WORK/idle-$t.out" 2>"$WORK/idle-$t.log" &
    PID_OF[idle]=$!
    for _ in $(seq 1200); do
        grep -q '^ready' "$WORK/idle-$t.out" && break
        kill -0 "${PID_OF[idle]}" 2>/dev/null || die "idle_conns.py exited: $(cat "$WORK/idle-$t.log")"
        sleep 0.1
    done
    read -r _ open failed < <(grep '^ready' "$WORK/idle-$t.out") || die "idle connections not open after 120 s"
    sleep "$IDLE_SETTLE"
    gauge=-
    [ "$t" = tollgate ] && gauge=$(metric_sum tollgate_open_connections)
    run_wrk "$t" spread.lua
    rss1=$(status_kb "$pid" VmRSS)
    echo "| $t | $open | $failed | $gauge | $(mb "$rss0") | $(mb "$rss1") |" \
        "$(awk -v a="$rss0" -v b="$rss1" -v n="$open" 'BEGIN { printf "%.1f", (n > 0) ? (b - a) / n : 0 }') |" \
        "$R_RPS | $R_P50 | $R_P99 |" \
        "$(awk -v n="$R_NON2XX" -v t="$R_TOTAL" 'BEGIN { printf "%.1f", (t > 0) ? 100 * n / t : 0 }') | $R_ERR |"
    stop_server idle
    [ "$R_TOTAL" -gt 0 ] || die "$t answered nothing on the active connections while holding idle ones"
done
table_footer
