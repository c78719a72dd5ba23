#!/usr/bin/env bash
# syscalls: system calls per request of tollgate, counted by `strace -c -f` attached for a wrk run.
# The relay floor makes one read and one write on each side per proxied request (one of each per
# 429), so anything above 4 (2 for a 429) is an extra flush, wasted read or wake-up.
# Env: LUA (spread.lua; hot.lua for 429s), KEYS (100000), DURATION (5), TOLLGATE_BIN, and
# lib.sh's RATE, PORT_BASE, CONNECTIONS (64). strace slows the process, so the request rate under
# it means nothing; only the calls per request do.
source "$(dirname "$0")/lib.sh"
need_tools wrk nginx:nginx-light strace
tollgate_bin
LUA=${LUA:-spread.lua}
DURATION=${DURATION:-5}
export KEYS=${KEYS:-100000}
check_ports_free "$UP_PORT" "$TG_PORT" "$TG_ADMIN_PORT"
start_upstream
quick_tollgate
warm_up tollgate "$LUA"

trace="$WORK/strace.txt"
strace -c -f -o "$trace" -p "${PID_OF[tollgate]}" 2>"$WORK/strace.log" &
PID_OF[strace]=$!
sleep 1 # strace attaches to every thread before the measured run begins
wrk_to "$WORK/wrk.txt" tollgate "$LUA" "$DURATION"
parse_wrk "$WORK/wrk.txt"
kill -INT "${PID_OF[strace]}"
wait "${PID_OF[strace]}" || true
unset 'PID_OF[strace]'
[ "$R_TOTAL" -gt 0 ] || die "tollgate answered no request"
[ -s "$trace" ] || die "strace wrote no summary (see strace.log)"

log "$LUA, $KEYS keys: $R_TOTAL requests under strace"
awk -v n="$R_TOTAL" -v l="$LUA" '
    $NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
        calls = $4; printf "  %-16s %8.3f per request\n", $NF, calls / n }
    $NF == "total" { printf "%s: %.3f syscalls per request\n", l, $4 / n }' "$trace"
