#!/usr/bin/env bash
# tls: the proxies terminate TLS (a self-signed P-256 certificate made by openssl in the run's
# temp dir) and forward plain HTTP/1.1 to the upstream. Two tables: wrk over https (HTTP/1.1,
# keep-alive, so handshakes are amortised) and h2load over https (h2 by ALPN, H2_CLIENTS x
# H2_STREAMS). The direct rows are the upstream over plain http / h2c: the cost of TLS shows in
# the ratio. Keys: random among KEYS, in the query (?key=), as h2load sends one fixed header set.
# tollgate runs from a generated config with [server] tls; nginx with "listen ... ssl http2";
# HAProxy with "bind ... ssl crt ... alpn h2,http/1.1".
# Env: KEYS (100000) H2_CLIENTS (4) H2_STREAMS (16), plus lib.sh's DURATION WARMUP CONNECTIONS
#      RATE TARGETS PIN.
source "$(dirname "$0")/lib.sh"
need_tools wrk h2load:nghttp2-client openssl nginx:nginx-light
tollgate_bin
export KEYS=${KEYS:-100000} KEY_IN=query
H2_CLIENTS=${H2_CLIENTS:-4}
H2_STREAMS=${H2_STREAMS:-16}
SCHEME=https

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>"$WORK/openssl.log" || die "openssl: $(cat "$WORK/openssl.log")"
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"
HAPROXY_BIND_OPTS="ssl crt $WORK/haproxy.pem alpn h2,http/1.1"
TG_CONFIG="$WORK/tollgate.toml"
CFG_SERVER="tls = { cert = \"$WORK/cert.pem\", key = \"$WORK/key.pem\" }" \
    write_config "$TG_CONFIG"
start_targets "ssl http2" "ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;"
for t in $TARGETS; do
    [ "$t" = direct ] || curl -sfk -o /dev/null "$(url_of "$t")?key=probe" || die "$t does not answer over https"
done

table_header "HTTP/1.1 over TLS (wrk), $KEYS keys"
compare spread.lua
table_footer

table_header "h2 over TLS (h2load -c$H2_CLIENTS -m$H2_STREAMS), $KEYS keys"
for t in $TARGETS; do
    uri_list "$WORK/uris-$t.txt" "$(h2_url_of "$t")"
    run_h2load "$t" "$(h2_url_of "$t")" --warm-up-time="$WARMUP" -c "$H2_CLIENTS" -m "$H2_STREAMS" \
        -i "$WORK/uris-$t.txt"
    table_row "$t"
done
echo
echo "direct = the upstream over plain http (wrk) and h2c (h2load): no TLS."
