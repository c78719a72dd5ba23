#!/usr/bin/env bash
# memory: tollgate's resident memory against the number of tracked keys. For each store mode in
# STORES (none = database.enabled false, sqlite = the SQLite store flushing every second), a fresh
# tollgate (direct route, one rule RATE/s per X-Api-Key, limits.max_keys 2000000, sweeping every
# hour so no key is evicted during the run) is walked through the keys of KEY_STEPS, each touched
# once (wrk, lua/walk.lua, in order). After each step (and the store's backlog drained) it reads
# VmRSS and VmHWM from /proc and tollgate_limiter_tracked_keys from /metrics, and prints
# keys -> RSS MB -> bytes per key over the idle process.
# Env: KEY_STEPS ("100000 1000000", cumulative totals) STORES ("none sqlite") WALK_SECONDS (300,
#      the bound of one step's walk), SETTLE (1, seconds to wait after the drain before reading
#      RSS; what the drain freed goes back to the OS within about 20 s, so SETTLE=22 reads the
#      settled figure), plus lib.sh's CONNECTIONS RATE PIN.
source "$(dirname "$0")/lib.sh"
need_tools wrk
tollgate_bin
KEY_STEPS=${KEY_STEPS:-100000 1000000}
STORES=${STORES:-none sqlite}
WALK_SECONDS=${WALK_SECONDS:-300}
SETTLE=${SETTLE:-1}
TARGETS=tollgate
check_ports_free "$TG_PORT" "$TG_ADMIN_PORT"

# walk OUT FROM COUNT TRACKED: touch keys FROM..FROM+COUNT-1 with wrk until tollgate tracks TRACKED
# keys, then stop wrk with SIGINT (it prints its summary); bounded by WALK_SECONDS.
walk() {
    FROM=$2 COUNT=$3 "${PIN_GEN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${WALK_SECONDS}s" --latency \
        -s "$LT_DIR/lua/walk.lua" "http://127.0.0.1:$TG_PORT/" >"$1" 2>&1 &
    PID_OF[wrk]=$!
    while kill -0 "${PID_OF[wrk]}" 2>/dev/null && [ "$(tracked_keys)" -lt "$4" ]; do sleep 0.2; done
    kill -INT "${PID_OF[wrk]}" 2>/dev/null || true
    wait "${PID_OF[wrk]}" || true
    unset 'PID_OF[wrk]'
    parse_wrk "$1"
}

table_title "RSS against tracked keys (one rule, $RATE/s per key)"
echo "| store | keys walked | tracked keys | RSS MB | VmHWM MB | RSS over idle MB | bytes per key | walk req/s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for store in $STORES; do
    case "$store" in
    none) db="enabled = false" ;;
    sqlite) db="sqlite_path = \"$WORK/usage.db\"
flush_interval = \"1s\"" ;;
    *) die "unknown store $store (none or sqlite)" ;;
    esac
    rm -f "$WORK"/usage.db*
    CFG_ROUTE=direct CFG_DB=$db CFG_LIMITS="max_keys = 2000000
sweep_interval = \"1h\"" write_config "$WORK/tollgate-$store.toml"
    start_tollgate --config "$WORK/tollgate-$store.toml"
    pid=${PID_OF[tollgate]}
    sleep 1
    rss0=$(status_kb "$pid" VmRSS) keys0=$(tracked_keys)
    echo "| $store | 0 | $keys0 | $(mb "$rss0") | $(mb "$(status_kb "$pid" VmHWM)") | 0 | - | - |"
    walked=0
    for total in $KEY_STEPS; do
        walk "$WORK/walk-$store-$total.txt" $((walked + 1)) $((total - walked)) $((keys0 + total))
        walked=$total
        if [ "$store" = sqlite ]; then # let the write-behind backlog drain (bounded)
            for _ in $(seq 120); do
                [ "$(metric_sum tollgate_store_pending_rows)" = 0 ] && break
                sleep 0.5
            done
        fi
        sleep "$SETTLE"
        rss=$(status_kb "$pid" VmRSS) keys=$(tracked_keys)
        [ "$keys" -ge "$total" ] || die "only $keys keys tracked after walking $total (raise WALK_SECONDS?)"
        echo "| $store | $total | $keys | $(mb "$rss") | $(mb "$(status_kb "$pid" VmHWM)") | $(mb $((rss - rss0))) |" \
            "$(awk -v r=$((rss - rss0)) -v k=$((keys - keys0)) 'BEGIN { printf "%.0f", (k > 0) ? r * 1024 / k : 0 }') | $R_RPS |"
    done
    stop_server tollgate
done
echo
echo "Each key is touched once (wrk -t1 -c$CONNECTIONS, lua/walk.lua); bytes per key = (RSS - idle RSS) / (tracked keys - idle tracked keys)."
echo "The sqlite rows are read once the store's pending rows reached 0 (each key has an hour usage tally, written every hour_flush_interval)."
