#!/usr/bin/env bash
# paced-oha: latency at a fixed offered rate, open loop, with oha's coordinated-omission
# correction: each request's latency counts from when it was due to be sent, not from when a
# busy connection got round to sending it, so a stall shows in the tail as every client behind
# it would feel it. (wrk measures closed-loop; the shared harness's paced scenario spreads
# wrk's sends with random delays, which approximates this without the correction.)
# Keys travel in the query (oha sends one set of headers; `--rand-regex-url` draws each URL):
# every proxy reads it there (`key_of` in lib.sh), KEY_DIGITS digits (5: 100k keys).
# Targets: direct upstream, nginx limit_req, tollgate (quick mode, one worker, no store).
# Env: QPS (15000), KEY_DIGITS (5), plus lib.sh's DURATION WARMUP CONNECTIONS RATE TARGETS PIN.
# oha is not a Debian package: `cargo install oha --locked` (the script says so when missing).
source "$(dirname "$0")/lib.sh"
need_tools nginx:nginx-light python3
command -v oha >/dev/null || die "oha is missing: cargo install oha --locked"
tollgate_bin
QPS=${QPS:-15000}
KEY_DIGITS=${KEY_DIGITS:-5}
KEY_IN=query
start_targets

# oha_run TARGET SECONDS OUT: one open-loop run at QPS, JSON in OUT.
oha_run() {
    # The URL is a regex; `[.]` and `[?]`, not backslashes, which the URL parser turns into `/`.
    local port
    port=$(port_of "$1")
    timeout --foreground $(($2 + 60)) "${PIN_GEN[@]}" oha -z "${2}s" -c "$CONNECTIONS" -q "$QPS" \
        --latency-correction --no-tui --output-format json --rand-regex-url \
        "http://127[.]0[.]0[.]1:$port/[?]key=k[0-9]{$KEY_DIGITS}" >"$3" 2>"$3.err" ||
        die "oha failed against $1: $(tail -n 5 "$3.err")"
}

table_title "open loop at $QPS req/s offered, latency corrected for coordinated omission"
echo "| target | req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | non-2xx % | proxy CPU µs/req |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for t in $TARGETS; do
    [ "$WARMUP" -gt 0 ] && oha_run "$t" "$WARMUP" "$WORK/oha-warmup.json"
    out="$WORK/oha-$t.json"
    measure_start "$t"
    oha_run "$t" "$DURATION" "$out"
    # R_TOTAL for measure_end: every answered request, whatever its status.
    R_TOTAL=$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["statusCodeDistribution"].values()))' "$out")
    [ "$R_TOTAL" -gt 0 ] || die "$t answered no request"
    measure_end "$t"
    python3 - "$out" "$t" "$R_CPU_FINE" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
codes = d["statusCodeDistribution"]
total = sum(codes.values())
non2xx = sum(n for c, n in codes.items() if not c.startswith("2"))
us = lambda k: f'{p[k] * 1e6:.0f}' if p.get(k) is not None else "-"
print(f'| {sys.argv[2]} | {d["summary"]["requestsPerSec"]:.0f} | {us("p50")} | {us("p90")} | {us("p99")} | {us("p99.9")} | {100 * non2xx / total:.1f} | {sys.argv[3]} |')
EOF
done
echo
echo "oha -c$CONNECTIONS -q$QPS --latency-correction, ${DURATION}s measured after ${WARMUP}s warm-up; keys k + $KEY_DIGITS digits in the query;" \
    "limit $RATE r/s per key; pinning: ${PIN_GEN[*]:-none} (load) / ${PIN_SRV[*]:-none} (servers)."
