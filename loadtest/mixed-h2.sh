#!/usr/bin/env bash
# mixed-h2: HTTP/1.1 and HTTP/2 clients at the same time on one proxy. wrk (HTTP/1.1,
# H1_CONNECTIONS connections) and h2load (h2c with prior knowledge, H2_CLIENTS connections x
# H2_STREAMS concurrent streams) run together for DURATION seconds, both with random keys among
# KEYS in the query (?key=, since h2load sends one fixed header set). One row per protocol and
# target; the CPU column is the proxy's CPU over both divided by all requests of both.
# Direct: wrk on the upstream's HTTP/1.1 port, h2load on its h2c port; nginx 1.22 needs its own
# h2c port too (a cleartext http2 listener there speaks nothing else), and so does HAProxy (a
# second bind with "proto h2"); tollgate serves both on one.
# Env: KEYS (100000) H1_CONNECTIONS (32) H2_CLIENTS (4) H2_STREAMS (16), plus lib.sh's DURATION
#      WARMUP RATE TARGETS PIN.
source "$(dirname "$0")/lib.sh"
need_tools wrk h2load:nghttp2-client nginx:nginx-light
tollgate_bin
export KEYS=${KEYS:-100000} KEY_IN=query
CONNECTIONS=${H1_CONNECTIONS:-32}
H2_CLIENTS=${H2_CLIENTS:-4}
H2_STREAMS=${H2_STREAMS:-16}
HAPROXY_EXTRA_BIND="bind 127.0.0.1:$HAPROXY_H2_PORT proto h2"
start_targets "" "listen 127.0.0.1:$NGINX_H2_PORT http2;"

table_header "HTTP/1.1 (wrk -c$CONNECTIONS) and h2c (h2load -c$H2_CLIENTS -m$H2_STREAMS) at once, $KEYS keys"
for t in $TARGETS; do
    uri_list "$WORK/uris-$t.txt" "$(h2_url_of "$t")"
    warm_up "$t" spread.lua
    measure_start "$t"
    wrk_to "$WORK/mixed-$t-h1.txt" "$t" spread.lua "$DURATION" &
    PID_OF[wrk]=$!
    h2load_to "$WORK/mixed-$t-h2.txt" "$(h2_url_of "$t")" "$DURATION" -c "$H2_CLIENTS" -m "$H2_STREAMS" \
        -i "$WORK/uris-$t.txt"
    wait "${PID_OF[wrk]}" || die "wrk failed against $t"
    unset 'PID_OF[wrk]'
    parse_wrk "$WORK/mixed-$t-h1.txt"
    h1=("$R_RPS" "$R_P50" "$R_P99" "$R_TOTAL" "$R_NON2XX" "$R_ERR")
    parse_h2load "$WORK/mixed-$t-h2.txt" "$WORK/mixed-$t-h2.txt.log"
    h2=("$R_RPS" "$R_P50" "$R_P99" "$R_TOTAL" "$R_NON2XX" "$R_ERR")
    R_TOTAL=$((h1[3] + h2[3]))
    measure_end "$t"
    read -r R_RPS R_P50 R_P99 R_TOTAL R_NON2XX R_ERR <<<"${h1[*]}"
    table_row "$t h1" h1
    read -r R_RPS R_P50 R_P99 R_TOTAL R_NON2XX R_ERR <<<"${h2[*]}"
    table_row "$t h2" h2
done
table_footer
