#!/usr/bin/env bash
# zipf: keys drawn from a Zipf law (exponent ZIPF_S, default 1.1) over KEYS (default 100000)
# keys, so a few hot keys are limited while the long tail is not. Prints the usual table, then
# the allowed / 429 split per target and tollgate's own decision counters.
# Env: KEYS ZIPF_S plus lib.sh's DURATION WARMUP CONNECTIONS RATE TARGETS PIN.
source "$(dirname "$0")/lib.sh"
need_tools wrk nginx:nginx-light
tollgate_bin
export KEYS=${KEYS:-100000} ZIPF_S=${ZIPF_S:-1.1}
start_targets

table_header "Zipf s=$ZIPF_S over $KEYS keys"
split=()
for t in $TARGETS; do
    deny0=0
    [ "$t" = tollgate ] && deny0=$(metric_sum tollgate_requests_total 'decision="deny"')
    run_wrk "$t" zipf.lua
    table_row "$t"
    line="$t: $((R_TOTAL - R_NON2XX)) allowed, $R_NON2XX non-2xx of $R_TOTAL"
    if [ "$t" = tollgate ]; then
        line+=" (tollgate_requests_total decision=deny: +$(($(metric_sum tollgate_requests_total 'decision="deny"') - deny0)), warm-up included)"
    fi
    split+=("$line")
done
echo
printf -- '- %s\n' "${split[@]}"
awk -v n="$KEYS" -v s="$ZIPF_S" 'BEGIN { for (k = 1; k <= n; k++) h += k ^ -s
    printf "- the top key draws %.1f%% of requests, the top 10 %.1f%%, the top 1000 %.1f%%\n",
        100 / h, 100 * t(10) / h, 100 * t(1000) / h }
    function t(m,   k, x) { for (k = 1; k <= m; k++) x += k ^ -s; return x }'
table_footer
