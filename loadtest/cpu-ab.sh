#!/usr/bin/env bash
# cpu-ab: proxy CPU per request of two or more tollgate builds, in interleaved rounds, to tell
# whether a change paid off on a VM whose speed drifts by several percent between minutes.
#
#   loadtest/cpu-ab.sh /tmp/tollgate-before target/release/tollgate
#
# Each round runs every binary once in turn (quick mode, --no-store, one worker, pinned to the
# server CPU beside the nginx upstream) under DURATION seconds of `wrk -t1 -c$CONNECTIONS` with
# LUA, and prints its CPU µs per request (utime+stime over requests completed). The summary is
# the median per binary. Env: LUA (spread.lua; hot.lua for 429s), ROUNDS (3), KEYS (100000),
# and lib.sh's DURATION, WARMUP, CONNECTIONS, RATE, PORT_BASE.
source "$(dirname "$0")/lib.sh"
need_tools wrk nginx:nginx-light
[ $# -ge 1 ] || die "usage: loadtest/cpu-ab.sh BINARY..."
LUA=${LUA:-spread.lua}
ROUNDS=${ROUNDS:-3}
export KEYS=${KEYS:-100000}
check_ports_free "$UP_PORT" "$TG_PORT" "$TG_ADMIN_PORT"
start_upstream

declare -A RUNS=()
for round in $(seq "$ROUNDS"); do
    for bin in "$@"; do
        TG_BIN=$bin
        [ -x "$TG_BIN" ] || die "$TG_BIN is not an executable"
        quick_tollgate
        run_wrk tollgate "$LUA"
        stop_server tollgate
        printf 'round %d  %-40s %8s req/s  %s µs/request\n' "$round" "$bin" "$R_RPS" "$R_CPU_FINE"
        RUNS[$bin]+="$R_CPU_FINE "
    done
done
echo
echo "median CPU µs per request ($LUA, $ROUNDS rounds of ${DURATION}s):"
for bin in "$@"; do
    # shellcheck disable=SC2086
    printf '%-40s %s  (%s)\n' "$bin" "$(printf '%s\n' ${RUNS[$bin]} | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')" "${RUNS[$bin]% }"
done
