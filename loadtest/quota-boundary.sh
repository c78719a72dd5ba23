#!/usr/bin/env bash
# quota-boundary: a daily quota exhausted just before local midnight, then crossed.
#
# tollgate runs one rule, QUOTA/d per X-Api-Key in the zone QUOTA_TZ, in front of the upstream.
# Its limiter clock is started (test-only TOLLGATE_CLOCK_START_MS) LEAD seconds before local
# midnight of BOUNDARY_DATE, aligned to the wall clock's whole seconds. wrk cycles through KEYS
# keys from start until AFTER seconds past midnight, counting answers per second. Prints a
# per-second timeline (2xx, 429, largest Retry-After against the seconds left to midnight), the
# 429 share before and after midnight, and one request's headers sampled with curl ~2.5 s before it.
# Fails (exit 1) if nothing was denied before midnight, nothing allowed after it, or more than
# 2 x KEYS x QUOTA requests were allowed over the two days: correctness checks, not timing ones.
#
# Env: QUOTA (1000) QUOTA_TZ (America/New_York) BOUNDARY_DATE (2027-01-01, the local date whose
#      midnight is crossed) LEAD (10) AFTER (5) KEYS (10), plus lib.sh's CONNECTIONS RATE PIN.
source "$(dirname "$0")/lib.sh"
need_tools wrk nginx:nginx-light
QUOTA=${QUOTA:-1000}
QUOTA_TZ=${QUOTA_TZ:-America/New_York}
BOUNDARY_DATE=${BOUNDARY_DATE:-2027-01-01}
LEAD=${LEAD:-10}
AFTER=${AFTER:-5}
export KEYS=${KEYS:-10}
[ -e "/usr/share/zoneinfo/$QUOTA_TZ" ] || install_packages tzdata # for date(1); tollgate bundles its own
[ -e "/usr/share/zoneinfo/$QUOTA_TZ" ] || die "unknown time zone $QUOTA_TZ"
tollgate_bin

midnight_s=$(TZ="$QUOTA_TZ" date -d "$BOUNDARY_DATE 00:00:00" +%s)
local_time() { TZ="$QUOTA_TZ" date -d "@$1" '+%Y-%m-%d %H:%M:%S'; }
now_ms() { date +%s%3N; }

check_ports_free "$UP_PORT" "$TG_PORT" "$TG_ADMIN_PORT"
start_upstream
CFG_LIMIT="[\"$QUOTA/d\"]" CFG_RULE="timezone = \"$QUOTA_TZ\"" write_config "$WORK/tollgate.toml"

# tollgate's clock reads real time + OFFSET_MS, a whole number of seconds, so its seconds (and
# local midnight) fall on the wall clock's second boundaries, where wrk's per-second counts split.
t0=$(now_ms)
OFFSET_MS=$(((midnight_s - LEAD - t0 / 1000) * 1000))
TOLLGATE_CLOCK_START_MS=$((t0 + OFFSET_MS)) start_tollgate --config "$WORK/tollgate.toml"
midnight_real_ms=$((midnight_s * 1000 - OFFSET_MS))
log "tollgate's clock started at $(local_time $(((t0 + OFFSET_MS) / 1000))) $QUOTA_TZ; midnight in $(((midnight_real_ms - $(now_ms)) / 1000)) s"

run_s=$(((midnight_real_ms - $(now_ms)) / 1000 + AFTER))
[ "$run_s" -gt "$AFTER" ] || die "tollgate took longer than LEAD=$LEAD s to start: raise LEAD"
out="$WORK/wrk-quota.txt"
timeout --foreground $((run_s + 60)) "${PIN_GEN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${run_s}s" --timeout 5s \
    -s "$LT_DIR/lua/quota.lua" "http://127.0.0.1:$TG_PORT/" >"$out" 2>&1 &
PID_OF[wrk]=$!

# One 429 looked at closely, ~2 s before midnight (the keys are long exhausted by then).
sleep "$(awk -v w=$((midnight_real_ms - 2500 - $(now_ms))) 'BEGIN { print (w > 0) ? w / 1000 : 0 }')"
sent_ms=$(now_ms)
sample=$(curl -s -o /dev/null -D - -H 'x-api-key: quota-001' "http://127.0.0.1:$TG_PORT/" | tr -d '\r')
wait "${PID_OF[wrk]}" || die "wrk failed: $(tail -n 5 "$out")"
unset 'PID_OF[wrk]'
grep -q '^SEC ' "$out" || die "no per-second counts in the wrk output: $(head -c 400 "$out")"

echo
echo "### quota-boundary: $QUOTA/d per key, $KEYS keys, local midnight $BOUNDARY_DATE in $QUOTA_TZ"
echo
echo "| local time (tollgate's clock) | s to midnight | 2xx | 429 | other | 429 % | largest Retry-After s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
share() { awk -v d="$1" -v n="$2" 'BEGIN { printf "%.1f%%", (n > 0) ? 100 * d / n : 0 }'; }
ok_b=0 deny_b=0 all_b=0 ok_a=0 deny_a=0 all_a=0
while read -r _ sec ok deny other retry; do
    t=$((sec + OFFSET_MS / 1000)) n=$((ok + deny + other))
    printf '| %s | %d | %d | %d | %d | %s | %s |\n' "$(TZ="$QUOTA_TZ" date -d "@$t" +%H:%M:%S)" \
        $((midnight_s - t)) "$ok" "$deny" "$other" "$(share "$deny" "$n")" "$retry"
    if [ "$t" -lt "$midnight_s" ]; then
        ok_b=$((ok_b + ok)) deny_b=$((deny_b + deny)) all_b=$((all_b + n))
    else
        ok_a=$((ok_a + ok)) deny_a=$((deny_a + deny)) all_a=$((all_a + n))
    fi
done < <(grep '^SEC ' "$out" | sort -k2n)
cap=$((KEYS * QUOTA))
echo
echo "- before midnight: $ok_b allowed (quota: $KEYS keys x $QUOTA = $cap), $deny_b denied: 429 share $(share "$deny_b" "$all_b")"
echo "- from midnight:   $ok_a allowed (a fresh $cap), $deny_a denied: 429 share $(share "$deny_a" "$all_a")"
sample_ms_left=$((midnight_real_ms - sent_ms))
echo "- curl with key quota-001 at $(local_time $(((sent_ms + OFFSET_MS) / 1000))) local, $sample_ms_left ms to midnight:" \
    "$(printf '%s\n' "$sample" | awk 'NR == 1 { $1 = ""; printf "%s", substr($0, 2) }');" \
    "$(printf '%s\n' "$sample" | grep -i -E '^(retry-after|ratelimit):' | paste -sd ';' -)" \
    "(a 429 then should carry Retry-After: $(((sample_ms_left + 999) / 1000)), the seconds to midnight rounded up)"
echo
echo "wrk -t1 -c$CONNECTIONS over $run_s s; per-second rows are wall-clock seconds (tollgate's clock lags by its start-up, a few ms)."

[ "$deny_b" -gt 0 ] || die "nothing was denied before midnight: the quota was not exhausted"
[ "$ok_a" -gt 0 ] || die "nothing was allowed after midnight: the quota did not reset"
# Both days together, since a row's second may straddle midnight by tollgate's start-up lag.
[ $((ok_b + ok_a)) -le $((2 * cap)) ] || die "more than $cap requests a day allowed over the two days"
