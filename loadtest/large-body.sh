#!/usr/bin/env bash
# large-body: one large body streamed through the proxy each way, REPEAT times: a BODY_MB MiB
# POST upload (the upstream reads and drops it) and a BODY_MB MiB download (the upstream serves
# a file), with curl on the load CPU. Prints the median throughput per direction against the
# direct upstream, the proxy's CPU per body, and its resident memory before and at peak
# (VmHWM): a proxy that streams grows by a few buffers, not by the body size.
# Env: BODY_MB (64) REPEAT (3), plus lib.sh's RATE TARGETS PIN.
source "$(dirname "$0")/lib.sh"
need_tools nginx:nginx-light
tollgate_bin
BODY_MB=${BODY_MB:-64}
REPEAT=${REPEAT:-3}
BODY_BYTES=$((BODY_MB * 1048576))
mkdir -p "$WORK/data"
head -c "$BODY_BYTES" /dev/urandom >"$WORK/data/body.bin"
chmod a+rx "$WORK" "$WORK/data" && chmod a+r "$WORK/data/body.bin" # nginx workers may run as nobody
start_targets

# transfer TARGET up|down -> "bytes/s" of one curl transfer; dies unless 200 with the whole body.
transfer() {
    local args=(-o /dev/null -H 'x-api-key: large-body') path=/files/body.bin dir=download code size speed
    if [ "$2" = up ]; then
        args+=(-T "$WORK/data/body.bin" -X POST) path=/upload dir=upload
    fi
    read -r code size speed < <(timeout --foreground 120 "${PIN_GEN[@]}" curl -s "${args[@]}" \
        -w "%{http_code} %{size_$dir} %{speed_$dir}" "$(url_of "$1" "$path")")
    [ "$code" = 200 ] && [ "$size" = "$BODY_BYTES" ] || die "$2 via $1: status $code, $size of $BODY_BYTES bytes"
    echo "$speed"
}
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.0f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "### large-body: ${BODY_MB} MiB up and down, $REPEAT times each (curl)"
echo
echo "| target | upload MB/s | × direct | download MB/s | × direct | proxy CPU ms per body | proxy RSS before MB | proxy peak RSS (VmHWM) MB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for t in $TARGETS; do
    pid=$(pid_of_target "$t")
    rss0=$(status_kb "$pid" VmRSS)
    measure_start "$t"
    up=() down=()
    for _ in $(seq "$REPEAT"); do
        up+=("$(transfer "$t" up)")
        down+=("$(transfer "$t" down)")
    done
    R_TOTAL=$((2 * REPEAT))
    measure_end "$t"
    up_bps=$(printf '%s\n' "${up[@]}" | median)
    down_bps=$(printf '%s\n' "${down[@]}" | median)
    [ "$t" = direct ] && base_up=$up_bps base_down=$down_bps
    awk -v t="$t" -v u="$up_bps" -v d="$down_bps" -v bu="${base_up:-0}" -v bd="${base_down:-0}" -v c="$R_CPU" \
        -v r0="$([ -n "$pid" ] && mb "$rss0" || echo -)" -v hwm="$([ -n "$pid" ] && mb "$(status_kb "$pid" VmHWM)" || echo -)" 'BEGIN {
        printf "| %s | %.0f | %s | %.0f | %s | %s | %s | %s |\n", t, u / 1e6, (bu > 0) ? sprintf("%.3f", u / bu) : "-",
            d / 1e6, (bd > 0) ? sprintf("%.3f", d / bd) : "-", (c == "-") ? "-" : sprintf("%.1f", c / 1000), r0, hwm }'
done
echo
echo "Throughput is the median of $REPEAT transfers (MB = 10^6 bytes); CPU per body is the proxy's CPU over all" \
    "$((2 * REPEAT)) transfers divided by their number. VmHWM is the peak since the proxy started, so" \
    "peak - before is what the transfers added; a buffered body would add ~$BODY_MB MiB or more."
