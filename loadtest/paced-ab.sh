#!/usr/bin/env bash
# paced-ab: the shared harness's paced scenario for two or more tollgate builds, in interleaved
# rounds, so that a VM whose speed drifts between minutes affects every build alike.
#
#   loadtest/paced-ab.sh /tmp/tollgate-before target/release/tollgate
#
# Each round runs ../shared/bench/side-by-side.sh -r 1 --targets ours --scenarios paced once per
# binary, in turn, each from a fresh empty directory (so the default SQLite store starts from an
# empty file), with the harness's usual proxy command (one worker, 100 r/s per X-Api-Key) plus
# EXTRA (e.g. EXTRA=--no-store). Prints per run: round, build, p50 µs, p99 µs, proxy CPU µs per
# request, and wrk's latency stdev and max. Env: ROUNDS (4), EXTRA (none), HARNESS (the path
# of side-by-side.sh).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: loadtest/paced-ab.sh BINARY..." >&2; exit 2; }
ROUNDS=${ROUNDS:-4}
EXTRA=${EXTRA:-}
HARNESS=${HARNESS:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench/side-by-side.sh}
[ -x "$HARNESS" ] || { echo "side-by-side.sh not found at $HARNESS (set HARNESS)" >&2; exit 1; }
RESULTS=$(dirname "$HARNESS")/results
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "round build p50_us p99_us cpu_us_per_req wrk_stdev wrk_max"
for round in $(seq "$ROUNDS"); do
    for bin in "$@"; do
        [ -x "$bin" ] || { echo "$bin is not an executable" >&2; exit 1; }
        bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
        name=$(basename "$bin")
        dir="$WORK/$round-$name"
        mkdir -p "$dir"
        (cd "$dir" && "$HARNESS" -r 1 --targets ours --scenarios paced --proxy-name "$name" \
            --proxy-cmd "$bin --listen 127.0.0.1:{PORT} --admin-listen 127.0.0.1:19191 --upstream http://127.0.0.1:{UP_PORT} --limit {RATE}/s --key header:x-api-key --workers 1 $EXTRA" \
            >"$dir/harness.log" 2>&1) || { echo "harness failed: see $dir/harness.log" >&2; cat "$dir/harness.log" >&2; exit 1; }
        out=$(sed -n 's/^results in //p' "$dir/harness.log" | tail -1)
        [ -n "$out" ] || out=$(ls -d "$RESULTS"/* | tail -1)
        row=$(tail -1 "$out/raw.tsv" | cut -f5,6,11 | tr '\t' ' ')
        lat=$(awk '/^ +Latency/ { print $3, $4; exit }' "$out/wrk-ours-paced-1.txt")
        echo "$round $name $row $lat"
    done
done
