#!/usr/bin/env bash
# The load-test entry point: loadtest/run.sh SCENARIO... | all | smoke | list
#
# Runs each named scenario script (loadtest/SCENARIO.sh) in turn; `all` runs every scenario
# below, `smoke` runs the CI smoke (a few seconds each of spread, hot and quota-boundary, against
# TOLLGATE_BIN, e.g. the debug build; it fails only when a script breaks, never on timing).
# Settings come from the environment (DURATION, CONNECTIONS, TARGETS, TOLLGATE_BIN, ...; see
# loadtest/README.md). Exit status: the number of scenarios that failed (0 when all passed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ALL="spread zipf hot quota-boundary mixed-h2 tls large-body idle-conns memory"

usage() {
    echo "usage: loadtest/run.sh SCENARIO... | all | smoke | list"
    echo "scenarios: $ALL (and pg-outage, which needs Postgres; paced-oha, which needs oha)"
}

smoke() {
    local s=0
    export DURATION=${DURATION:-2} WARMUP=0 TARGETS=${TARGETS:-direct tollgate}
    KEYS_LIST=10000 "$here/spread.sh" || s=$((s + 1))
    "$here/hot.sh" || s=$((s + 1))
    # 100/d per key (1,000 in all) is exhausted before midnight even at a few hundred r/s, so a
    # slow debug build on a busy machine still sees denials; the full scenario uses 1000/d.
    QUOTA=${QUOTA:-100} LEAD=4 AFTER=2 "$here/quota-boundary.sh" || s=$((s + 1))
    return "$s"
}

[ $# -gt 0 ] || { usage >&2; exit 2; }
failed=()
for arg in "$@"; do
    case "$arg" in
    list | -h | --help) usage; continue ;;
    all) names=$ALL ;;
    *) names=$arg ;;
    esac
    for s in $names; do
        if [ "$s" = smoke ]; then
            smoke || failed+=(smoke)
        elif [ -x "$here/$s.sh" ] && [ "$s" != run ]; then
            "$here/$s.sh" || failed+=("$s")
        else
            usage >&2
            exit 2
        fi
    done
done
if ((${#failed[@]})); then
    echo "[run] failed: ${failed[*]}" >&2
fi
exit "${#failed[@]}"
