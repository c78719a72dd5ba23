#!/usr/bin/env bash
# Proxy latency under load with Postgres reachable vs. Postgres cut, as a ratio.
#
# Everything stays on 127.0.0.1. Builds the release binary, creates a fresh database, puts a
# socat relay between tollgate and Postgres, and runs the same wrk load twice against a direct
# route whose rule records every request in a quota row (so the flusher has work every second):
#   1. reachable: the relay forwards to Postgres;
#   2. cut:       the relay and every connection it carries are killed (open connections drop,
#                 new ones are refused) for the whole run.
# Then the relay comes back and the script checks that flushes failed during the cut
# (tollgate_store_flushes_total{result="error"} > 0) and that tollgate_store_pending_rows
# drains back to 0 (reporting how long it took; the flusher backs off up to 30 s while failing).
#
# Usage: loadtest/pg-outage.sh            (from anywhere in the repo)
# Env:   PG_ADMIN_URL   server to create the database on (default postgres://postgres@127.0.0.1:5432/postgres)
#        DURATION       wrk duration per phase (default 10s)
#        CONNECTIONS    wrk connections (default 16)
#        KEYS           distinct x-api-key values (default 100000)
#        PROXY_PORT ADMIN_PORT RELAY_PORT   (defaults 18080 19091 15433)
#        SKIP_BUILD=1   use the existing target/release/tollgate
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
KEYS=${KEYS:-100000}
PROXY_PORT=${PROXY_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19091}
RELAY_PORT=${RELAY_PORT:-15433}
DB="tollgate_lt_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

log() { printf '[pg-outage] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# --- tools --------------------------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v socat >/dev/null || need+=(socat)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get install -y "${need[@]}" >/dev/null 2>&1 ||
        { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
fi
for t in wrk socat psql curl; do command -v "$t" >/dev/null || die "$t is required"; done

# Pin wrk to CPU 0 and tollgate to CPU 1 when possible, so they do not fight over one core.
PIN_WRK=() PIN_PROXY=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_WRK=(taskset -c 0) PIN_PROXY=(taskset -c 1)
fi

# --- cleanup ------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-pg-outage.XXXXXX")
PROXY_PID="" RELAY_PID="" DB_CREATED=""

stop_relay() {
    # socat runs in its own session (setsid): killing the group also kills the forked children
    # that carry the open connections, which is what a cut must do.
    if [ -n "$RELAY_PID" ]; then
        kill -- "-$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=""
    fi
}

cleanup() {
    local rc=$?
    if [ -n "$PROXY_PID" ]; then
        kill "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    stop_relay
    if [ -n "$DB_CREATED" ]; then
        psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 ||
            log "could not drop database $DB"
    fi
    if [ "$rc" -ne 0 ] && [ -f "$WORK/tollgate.log" ]; then
        log "last lines of the tollgate log:"
        tail -n 20 "$WORK/tollgate.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$PROXY_PORT" "$ADMIN_PORT" "$RELAY_PORT"; do
    port_free "$p" || die "port $p on 127.0.0.1 is in use"
done

# --- build, database, relay ---------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release"
    cargo build --release --quiet
fi
BIN="$ROOT/target/release/tollgate"
[ -x "$BIN" ] || die "$BIN missing"

log "creating database $DB"
psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null
DB_CREATED=1

start_relay() {
    setsid socat "TCP-LISTEN:$RELAY_PORT,bind=127.0.0.1,reuseaddr,fork" TCP:127.0.0.1:5432 &
    RELAY_PID=$!
    for _ in $(seq 50); do
        port_free "$RELAY_PORT" || return 0
        sleep 0.1
    done
    die "socat relay did not listen on $RELAY_PORT"
}
start_relay

# --- config and proxy ---------------------------------------------------------------------------
cat >"$WORK/tollgate.toml" <<EOF
[server]
listen = "127.0.0.1:$PROXY_PORT"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[limits]
max_keys = 1000000

[log]
format = "text"
access_log = false

[database]
url = "postgres://postgres@127.0.0.1:$RELAY_PORT/$DB?sslmode=disable"
flush_interval = "1s"

# Every request is allowed (the limits are out of reach) and counted in an hour and a day
# quota row per key, so each flush writes up to one row per active key and period.
[[rules]]
name = "per-key"
key = "header:x-api-key"
limits = ["1000000/m", "100000000/d"]

[[routes]]
name = "direct"
path_prefix = "/"
rules = ["per-key"]
[routes.direct]
status = 200
body = "ok"
EOF

cat >"$WORK/keys.lua" <<EOF
-- One of $KEYS API keys per request, uniformly at random.
math.randomseed(os.time())
request = function()
    wrk.headers["x-api-key"] = "key-" .. math.random(1, $KEYS)
    return wrk.format("GET", "/")
end
EOF

log "starting tollgate"
RUST_LOG=${RUST_LOG:-warn} "${PIN_PROXY[@]}" "$BIN" --config "$WORK/tollgate.toml" \
    >"$WORK/tollgate.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null && break
    kill -0 "$PROXY_PID" 2>/dev/null || die "tollgate exited"
    sleep 0.2
done
curl -sf "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null || die "tollgate not ready after 20 s"
curl -sf -H 'x-api-key: smoke' "http://127.0.0.1:$PROXY_PORT/" | grep -qx ok ||
    die "direct route does not answer ok"

metric() { # metric NAME_WITH_LABELS -> value (0 when absent)
    curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk -v m="$1" '$1 == m { v = $2 } END { print (v == "" ? 0 : v) }'
}

# --- load ---------------------------------------------------------------------------------------
# run_wrk NAME -> wrk output in $WORK/NAME.txt; prints "p50_ms p99_ms req_per_s non2xx errors"
to_ms() { # wrk latency (e.g. 812.00us, 1.20ms, 2.01s) -> milliseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}
run_wrk() {
    local out="$WORK/$1.txt"
    "${PIN_WRK[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/keys.lua" \
        "http://127.0.0.1:$PROXY_PORT/" >"$out"
    local p50 p99 rps non2xx errs
    p50=$(awk '$1 == "50%" { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    rps=$(awk '$1 == "Requests/sec:" { print $2 }' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    errs=$(awk '/Socket errors:/ { s = 0; for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i; print s }' "$out")
    echo "$(to_ms "$p50") $(to_ms "$p99") $rps ${non2xx:-0} ${errs:-0}"
}

log "phase 1: Postgres reachable ($DURATION, $CONNECTIONS connections, $KEYS keys)"
read -r R50 R99 RRPS RNON RERR < <(run_wrk reachable)
R_ERR_BEFORE=$(metric 'tollgate_store_flushes_total{result="error"}')
R_OK=$(metric 'tollgate_store_flushes_total{result="ok"}')

log "cutting Postgres (killing the relay and its connections)"
stop_relay
port_free "$RELAY_PORT" || die "relay port still open after the cut"
log "phase 2: Postgres cut"
read -r C50 C99 CRPS CNON CERR < <(run_wrk cut)
PENDING_CUT=$(metric tollgate_store_pending_rows)
UP_CUT=$(metric tollgate_store_up)

log "restoring Postgres"
start_relay
sleep 3
ERRORS=$(metric 'tollgate_store_flushes_total{result="error"}')
DRAIN_LIMIT=${DRAIN_LIMIT:-45}
drained_after=""
start=$(date +%s.%N)
for _ in $(seq $((DRAIN_LIMIT * 5))); do
    if [ "$(metric tollgate_store_pending_rows)" = 0 ]; then
        drained_after=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s + 3 }')
        break
    fi
    sleep 0.2
done
PENDING_END=$(metric tollgate_store_pending_rows)
DROPPED=$(metric tollgate_store_dropped_rows_total)
ROWS=$(psql -qtA "${PG_ADMIN_URL%/*}/$DB" -c \
    "SELECT count(*) || ' rows, ' || coalesce(sum(count), 0) || ' requests' FROM usage WHERE period = 'day'")

# --- report -------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "tollgate under load: Postgres reachable vs. cut (wrk -t1 -c$CONNECTIONS -d$DURATION, $KEYS keys)"
echo
echo "| | reachable | cut | cut / reachable |"
echo "|---|---:|---:|---:|"
echo "| p50 latency (ms) | $R50 | $C50 | $(ratio "$C50" "$R50") |"
echo "| p99 latency (ms) | $R99 | $C99 | $(ratio "$C99" "$R99") |"
echo "| requests/s | $RRPS | $CRPS | $(ratio "$CRPS" "$RRPS") |"
echo "| non-2xx responses | $RNON | $CNON | |"
echo "| socket errors | $RERR | $CERR | |"
echo
echo "store: flushes ok before the cut = $R_OK, errors before the cut = $R_ERR_BEFORE"
echo "store: during the cut tollgate_store_up = $UP_CUT, pending rows at the end of the cut = $PENDING_CUT"
echo "store: flushes with result=\"error\" after restore = $ERRORS"
echo "store: pending rows back to 0 after ${drained_after:-NOT within ${DRAIN_LIMIT}} s from restore (limit of the check: 10 s); dropped rows = $DROPPED"
echo "store: in Postgres afterwards: $ROWS"
echo

status=0
awk -v e="$ERRORS" 'BEGIN { exit !(e > 0) }' || { log "FAIL: no flush errors recorded during the cut"; status=1; }
[ "$PENDING_END" = 0 ] || { log "FAIL: pending rows still $PENDING_END"; status=1; }
if [ -n "$drained_after" ] && awk -v d="$drained_after" 'BEGIN { exit !(d > 10) }'; then
    log "WARN: pending rows took ${drained_after} s (> 10 s) to drain: the flusher's backoff outlasted the outage"
fi
exit "$status"
