#!/usr/bin/env bash
# spread: a random X-Api-Key per request, uniformly over 100k and then 1M keys, with a per-key
# limit that is never reached: the cost of limiting plus proxying when the key table is large.
# Targets: direct upstream, nginx limit_req, tollgate (quick mode, --max-keys 2000000).
# Env: KEYS_LIST ("100000 1000000") plus lib.sh's DURATION WARMUP CONNECTIONS RATE TARGETS PIN.
source "$(dirname "$0")/lib.sh"
need_tools wrk nginx:nginx-light
tollgate_bin
TG_ARGS=(--max-keys 2000000)
start_targets

for KEYS in ${KEYS_LIST:-100000 1000000}; do
    export KEYS
    table_header "uniform over $KEYS keys"
    compare spread.lua
    if [ -n "${PID_OF[tollgate]:-}" ]; then
        echo
        echo "tollgate tracked keys after the run: $(tracked_keys) (keys idle for twice their window are swept every 10 s)"
    fi
    table_footer
done
