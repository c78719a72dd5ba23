#!/usr/bin/env bash
# workers-ab: tollgate with more than one worker, in several shapes, beside nginx and HAProxy
# with as many workers, on the shared harness without CPU pinning, in interleaved rounds.
#
#   loadtest/workers-ab.sh                         # per_worker against work_stealing, 2 workers
#   loadtest/workers-ab.sh 'a=--workers 2' 'b=--workers 1'
#
# Each argument is NAME=FLAGS: flags added to the harness's usual quick-mode command (100 r/s per
# X-Api-Key, --no-store). Each round runs ../shared/bench/side-by-side.sh -r 1 once per variant,
# in turn; the first variant's run also takes PEERS, so the peers are measured in every round
# beside the variants. Layout: PIN=0, wrk with WRK_THREADS threads, nginx and HAProxy with
# SERVER_WORKERS workers (2 and 2 unless set): every process may run on either core, as a
# sidecar's would. Prints per run: round, scenario, target, req/s, p99 µs, proxy CPU µs per
# request; then the medians per target and scenario, with req/s as a share of direct's.
# Env: TOLLGATE_BIN (target/release/tollgate), ROUNDS (3), SCENARIOS ("spread hot"), PEERS
# ("direct nginx haproxy"), DURATION (10), HARNESS (the path of side-by-side.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${TOLLGATE_BIN:-$HERE/../target/release/tollgate}
[ -x "$BIN" ] || { echo "$BIN is not an executable (build with cargo build --release)" >&2; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-spread hot}
PEERS=${PEERS:-direct nginx haproxy}
DURATION=${DURATION:-10}
export PIN=${PIN:-0} WRK_THREADS=${WRK_THREADS:-2} SERVER_WORKERS=${SERVER_WORKERS:-2}
HARNESS=${HARNESS:-$(cd "$HERE/../.." && pwd)/shared/bench/side-by-side.sh}
[ -x "$HARNESS" ] || { echo "side-by-side.sh not found at $HARNESS (set HARNESS)" >&2; exit 1; }
[ $# -ge 1 ] || set -- 'per_worker=--workers 2 --runtime per_worker' 'work_stealing=--workers 2 --runtime work_stealing'
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROWS=$WORK/rows.tsv

echo "round scenario target rps p99_us cpu_us_per_req"
for round in $(seq "$ROUNDS"); do
    first=1
    for variant in "$@"; do
        name=${variant%%=*}
        flags=${variant#*=}
        targets=ours
        [ "$first" = 1 ] && targets="$PEERS ours"
        first=0
        dir="$WORK/$round-$name"
        mkdir -p "$dir"
        (cd "$dir" && OUT_DIR="$dir/out" "$HARNESS" -r 1 -d "$DURATION" --targets "$targets" \
            --scenarios "$SCENARIOS" --proxy-name "$name" \
            --proxy-cmd "$BIN --listen 127.0.0.1:{PORT} --admin-listen 127.0.0.1:19191 --upstream http://127.0.0.1:{UP_PORT} --limit {RATE}/s --key header:x-api-key --no-store $flags" \
            >"$dir/harness.log" 2>&1) || { echo "harness failed: see below" >&2; cat "$dir/harness.log" >&2; exit 1; }
        # raw.tsv: round scenario target rps p50 p99 non2xx total sock_err loadgen_cpu proxy_cpu upstream_cpu
        tail -n +2 "$dir/out/raw.tsv" | awk -F'\t' -v r="$round" '{ print r, $2, $3, $4, $6, $11 }' |
            tee -a "$ROWS"
    done
done
echo
echo "medians of $ROUNDS rounds (req/s, share of direct's, p99 µs, proxy CPU µs per request):"
for scen in $SCENARIOS; do
    direct=$(awk -v s="$scen" '$2 == s && $3 == "direct" { print $4 }' "$ROWS" | sort -n |
        awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
    for target in $(awk -v s="$scen" '$2 == s { print $3 }' "$ROWS" | awk '!seen[$0]++'); do
        med() {
            awk -v s="$scen" -v t="$target" -v c="$1" '$2 == s && $3 == t { print $c }' "$ROWS" |
                sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
        }
        rps=$(med 4)
        share=$(awk -v a="$rps" -v d="${direct:-0}" 'BEGIN { if (d > 0) printf "%.3f", a / d; else print "-" }')
        printf '%-8s %-16s %10s  %6s  %8s  %6s\n' "$scen" "$target" "$rps" "$share" "$(med 5)" "$(med 6)"
    done
done
