#!/usr/bin/env bash
# instructions: user-space instructions per request of tollgate, counted by valgrind's callgrind.
# Unlike CPU time they repeat from run to run on a noisy VM, so they rank two builds reliably
# (but they do not count the kernel's share, the syscalls, which CPU time does).
#
# tollgate (quick mode, --no-store, one worker) runs under callgrind twice, once for SHORT and
# once for LONG seconds of `wrk -t1 -c10` with LUA; the difference of the two removes start-up
# and shutdown: Ir per request = (Ir_long - Ir_short) / (requests_long - requests_short).
# Env: LUA (spread.lua; hot.lua for 429s), KEYS (100000), SHORT (5), LONG (25), TOLLGATE_BIN,
# TARGET (tollgate; nginx counts nginx limit_req the same way: one process, master_process off,
# the loadtest's nginx-limit.conf), and lib.sh's RATE, BURST, PORT_BASE, KEEP_WORK (keeps the
# callgrind.out files for callgrind_annotate).
source "$(dirname "$0")/lib.sh"
need_tools wrk nginx:nginx-light valgrind
TARGET=${TARGET:-tollgate}
case $TARGET in
tollgate) tollgate_bin ;;
nginx) ;;
*) die "TARGET is tollgate or nginx, not $TARGET" ;;
esac
LUA=${LUA:-spread.lua}
SHORT=${SHORT:-5} LONG=${LONG:-25}
export KEYS=${KEYS:-100000}
CONNECTIONS=10
check_ports_free "$UP_PORT" "$TG_PORT" "$TG_ADMIN_PORT" "$NGINX_PORT"
start_upstream

# start_counted OUT: the target under callgrind, waits until it answers.
start_counted() {
    local out=$1 i
    if [ "$TARGET" = nginx ]; then
        local dir="$WORK/nginx"
        mkdir -p "$dir/tmp" "$WORK/data"
        render nginx-limit.conf "$dir/nginx.conf" "s|__PORT__|$NGINX_PORT|g" \
            "s|__KEY__|\$http_x_api_key|g" "s|__LISTEN_OPTS__||g" "s|__SERVER_EXTRA__||g"
        start_server nginx valgrind --tool=callgrind --callgrind-out-file="$out" \
            nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off; master_process off;'
        wait_port "$NGINX_PORT" nginx
        return 0
    fi
    # No `env` in between: valgrind does not follow an exec.
    RUST_LOG=warn start_server tollgate valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$TG_BIN" --listen "127.0.0.1:$TG_PORT" --admin-listen "127.0.0.1:$TG_ADMIN_PORT" \
        --upstream "http://127.0.0.1:$UP_PORT" --limit "$RATE/s" --key header:x-api-key \
        --workers 1 --no-store
    for i in $(seq 600); do
        curl -sf "http://127.0.0.1:$TG_ADMIN_PORT/ready" >/dev/null && return 0
        kill -0 "${PID_OF[tollgate]}" 2>/dev/null || die "tollgate exited under valgrind (see tollgate.log)"
        sleep 0.1
    done
    die "tollgate not ready under valgrind"
}

# one_run SECONDS: prints "requests Ir" of one callgrind run.
one_run() {
    local secs=$1 out="$WORK/callgrind.$1.out" i
    start_counted "$out"
    wrk_to "$WORK/wrk.$secs.txt" "$TARGET" "$LUA" "$secs"
    parse_wrk "$WORK/wrk.$secs.txt"
    # callgrind writes its counts at exit; a graceful stop under valgrind takes a while.
    kill -TERM "${PID_OF[$TARGET]}"
    for i in $(seq 600); do
        kill -0 "${PID_OF[$TARGET]}" 2>/dev/null || break
        sleep 0.1
    done
    stop_server "$TARGET"
    local ir
    ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$out")
    [ -n "$ir" ] || die "no instruction total in $out"
    echo "$R_TOTAL $ir"
}

log "callgrind, $TARGET, $LUA, $KEYS keys: ${SHORT}s and ${LONG}s of wrk -t1 -c10"
read -r n1 ir1 < <(one_run "$SHORT")
read -r n2 ir2 < <(one_run "$LONG")
[ "$n2" -gt "$n1" ] || die "the long run answered no more requests than the short one"
echo "runs: ${SHORT}s $n1 requests $ir1 Ir; ${LONG}s $n2 requests $ir2 Ir"
awk -v a="$ir1" -v b="$ir2" -v n="$n1" -v m="$n2" -v l="$LUA" \
    'BEGIN { printf "%s: %.0f instructions per request\n", l, (b - a) / (m - n) }'
