#!/usr/bin/env bash
# hot: every request carries the same X-Api-Key, so nearly all of them get 429 (the direct
# upstream has no limit and answers 200). Rank the proxies by CPU per request, not req/s: wrk
# is the bottleneck when answers are this cheap.
# Env: lib.sh's DURATION WARMUP CONNECTIONS RATE TARGETS PIN.
source "$(dirname "$0")/lib.sh"
need_tools wrk nginx:nginx-light
tollgate_bin
start_targets

table_header "one key (~all 429)"
for t in $TARGETS; do
    run_wrk "$t" hot.lua
    table_row "$t"
    if [ "$t" = tollgate ] && [ "$R_NON2XX" -eq 0 ]; then
        die "tollgate answered no 429 to one hot key"
    fi
done
if [ -n "${PID_OF[tollgate]:-}" ]; then
    echo
    echo "tollgate: $(metric_sum tollgate_requests_total 'decision="deny"') denied," \
        "$(metric_sum tollgate_requests_total 'decision="allow"') allowed since start (warm-up included)"
fi
table_footer
