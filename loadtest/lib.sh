# shellcheck shell=bash
# The glue every scenario sources (never run on its own): settings from the environment, tools,
# the tollgate binary, servers started and stopped by PID, CPU/RSS probes, /metrics scraping,
# wrk/h2load runs parsed into R_* variables, and the markdown table of a scenario.
#
# Everything listens on 127.0.0.1 only; every server is started here and stopped by its PID on
# exit (also on error or Ctrl-C); every load run is bounded by `timeout`.
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LT_DIR/.." && pwd)
SCENARIO=${SCENARIO:-$(basename "$0" .sh)}

# --- settings (see loadtest/README.md) ----------------------------------------------------------
DURATION=${DURATION:-10}       # seconds per measured run
WARMUP=${WARMUP:-1}            # seconds of unmeasured load before each measured run
CONNECTIONS=${CONNECTIONS:-64} # wrk connections
RATE=${RATE:-100}              # per-key limit, requests per second (tollgate and nginx)
BURST=${BURST:-100}            # nginx limit_req burst
TARGETS=${TARGETS:-direct nginx haproxy tollgate}
PORT_BASE=${PORT_BASE:-18100}
UP_PORT=$PORT_BASE
TG_PORT=$((PORT_BASE + 1))
TG_ADMIN_PORT=$((PORT_BASE + 2))
NGINX_PORT=$((PORT_BASE + 3))
UP_H2_PORT=$((PORT_BASE + 4))
NGINX_H2_PORT=$((PORT_BASE + 5))
HAPROXY_PORT=$((PORT_BASE + 6))
HAPROXY_H2_PORT=$((PORT_BASE + 7))
PIN=${PIN:-1}
LOADGEN_CPUS=${LOADGEN_CPUS:-0}
SERVER_CPUS=${SERVER_CPUS:-1}
SCHEME=http
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[%s] %s\n' "$SCENARIO" "$*" >&2; }
die() {
    log "FAIL: $*"
    exit 1
}

PIN_GEN=() PIN_SRV=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_GEN=(taskset -c "$LOADGEN_CPUS") PIN_SRV=(taskset -c "$SERVER_CPUS")
fi

# install_packages PKG...: apt-get install (as root; with an apt-get update when the lists are stale).
install_packages() {
    [ "$(id -u)" = 0 ] || die "missing $*: apt-get install -y $*"
    log "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
# need_tools CMD[:PACKAGE]...: installs the Debian packages of missing commands (curl and ps,
# which lib.sh itself uses, always included; haproxy is installed where it is started).
need_tools() {
    local spec pkgs=()
    set -- "$@" curl ps:procps
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null || pkgs+=("${spec#*:}")
    done
    ((${#pkgs[@]})) || return 0
    install_packages "${pkgs[@]}"
    for spec in "$@"; do command -v "${spec%%:*}" >/dev/null || die "${spec%%:*} still missing"; done
}

# tollgate_bin: TOLLGATE_BIN (default target/release/tollgate), built when missing unless SKIP_BUILD.
tollgate_bin() {
    TG_BIN=${TOLLGATE_BIN:-$ROOT/target/release/tollgate}
    case "$TG_BIN" in /*) ;; *) TG_BIN=$ROOT/$TG_BIN ;; esac
    if [ ! -x "$TG_BIN" ] && [ -z "${SKIP_BUILD:-}" ] && [ "$TG_BIN" = "$ROOT/target/release/tollgate" ]; then
        log "cargo build --release"
        (cd "$ROOT" && cargo build --release --quiet)
    fi
    [ -x "$TG_BIN" ] || die "$TG_BIN missing (set TOLLGATE_BIN or build it)"
}

# --- processes ----------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-lt-$SCENARIO.XXXXXX")
declare -A PID_OF=()

stop_pid() { # TERM, then KILL after 5 s; only PIDs this script started
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
stop_server() { # stop_server NAME
    [ -n "${PID_OF[$1]:-}" ] || return 0
    stop_pid "${PID_OF[$1]}"
    unset "PID_OF[$1]"
}
cleanup() {
    local rc=$? name
    for name in "${!PID_OF[@]}"; do stop_pid "${PID_OF[$name]}"; done
    if [ "$rc" -ne 0 ]; then
        for name in "$WORK"/*.log; do
            [ -s "$name" ] || continue
            log "last lines of $(basename "$name"):"
            tail -n 15 "$name" >&2 || true
        done
    fi
    if [ -n "${KEEP_WORK:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # wait_port PORT NAME: up to 20 s, failing early if NAME exits
    local i
    for i in $(seq 200); do
        port_open "$1" && return 0
        kill -0 "${PID_OF[$2]}" 2>/dev/null || die "$2 exited (see $2.log)"
        sleep 0.1
    done
    die "$2 did not listen on $1"
}
check_ports_free() {
    local p
    for p in "$@"; do ! port_open "$p" || die "port $p on 127.0.0.1 is in use (set PORT_BASE)"; done
}

start_server() { # start_server NAME CMD...: on the server CPUs, output in $WORK/NAME.log
    local name=$1
    shift
    "${PIN_SRV[@]}" "$@" >"$WORK/$name.log" 2>&1 &
    PID_OF[$name]=$!
}

# render TEMPLATE OUT [SED-EXPR...]: the conf/ template with the common placeholders filled in.
render() {
    local tmpl=$1 out=$2
    shift 2
    local exprs=(-e "s|__WORKERS__|1|g" -e "s|__UP_PORT__|$UP_PORT|g" -e "s|__UP_H2_PORT__|$UP_H2_PORT|g"
        -e "s|__RATE__|$RATE|g" -e "s|__BURST__|$BURST|g" -e "s|__DATA__|$WORK/data|g")
    local e
    for e in "$@"; do exprs+=(-e "$e"); done
    sed "${exprs[@]}" "$LT_DIR/conf/$tmpl" >"$out"
}
start_nginx() { # start_nginx NAME TEMPLATE PORT [SED-EXPR...]
    local name=$1 tmpl=$2 port=$3 dir="$WORK/$1"
    shift 3
    mkdir -p "$dir/tmp" "$WORK/data"
    render "$tmpl" "$dir/nginx.conf" "s|__PORT__|$port|g" "$@"
    nginx -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" 2>"$WORK/$name.log" ||
        die "$name config rejected: $(cat "$WORK/$name.log")"
    start_server "$name" nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;'
    wait_port "$port" "$name"
}
start_upstream() { start_nginx upstream upstream-nginx.conf "$UP_PORT"; }

# key_of nginx|haproxy|tollgate: how that proxy reads the load's key: the X-Api-Key header, or
# with KEY_IN=query (h2load and oha send one fixed header set) the query's `key`. One place, so
# no peer is left keyed on what the load does not send.
key_of() {
    case "${KEY_IN:-header}:$1" in
    query:nginx) echo '$arg_key' ;;
    query:haproxy) echo 'url_param(key)' ;;
    query:tollgate) echo query:key ;;
    *:nginx) echo '$http_x_api_key' ;;
    *:haproxy) echo 'req.hdr(x-api-key)' ;;
    *:tollgate) echo header:x-api-key ;;
    esac
}

# start_nginx_limit [LISTEN-OPTS [SERVER-EXTRA]]: the peer proxy on NGINX_PORT.
start_nginx_limit() {
    start_nginx nginx nginx-limit.conf "$NGINX_PORT" "s|__KEY__|$(key_of nginx)|g" \
        "s|__LISTEN_OPTS__|${1:-}|g" "s|__SERVER_EXTRA__|${2:-}|g"
}

# start_haproxy_limit: the second peer proxy on HAPROXY_PORT, keyed as `key_of haproxy` says,
# with HAPROXY_BIND_OPTS on its bind line, HAPROXY_EXTRA_BIND (a second bind line) and HAPROXY_MAXCONN (8000 as in the harness, or less where `ulimit -Hn`
# is lower: HAProxy wants two file descriptors per connection and will not start without them).
# `-db`: in the foreground, stopped by its PID.
start_haproxy_limit() {
    local dir="$WORK/haproxy" hard
    need_tools haproxy
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] && hard=$((1 << 20))
    HAPROXY_MAXCONN=${HAPROXY_MAXCONN:-$((hard / 2 - 100 < 8000 ? hard / 2 - 100 : 8000))}
    mkdir -p "$dir"
    render haproxy-limit.cfg "$dir/haproxy.cfg" "s|__PORT__|$HAPROXY_PORT|g" \
        "s|__KEY_FETCH__|$(key_of haproxy)|g" "s|__BIND_OPTS__|${HAPROXY_BIND_OPTS:-}|g" \
        "s|__EXTRA_BIND__|${HAPROXY_EXTRA_BIND:-}|g" "s|__MAXCONN__|$HAPROXY_MAXCONN|g"
    haproxy -c -q -f "$dir/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 ||
        die "haproxy config rejected: $(cat "$WORK/haproxy.log")"
    start_server haproxy haproxy -db -f "$dir/haproxy.cfg"
    wait_port "$HAPROXY_PORT" haproxy
}

# start_tollgate ARGS...: tollgate on TG_PORT (admin TG_ADMIN_PORT), waits for /ready.
start_tollgate() {
    start_server tollgate env RUST_LOG="${RUST_LOG:-warn}" "$TG_BIN" "$@"
    local i
    for i in $(seq 200); do
        curl -sf "http://127.0.0.1:$TG_ADMIN_PORT/ready" >/dev/null && return 0
        kill -0 "${PID_OF[tollgate]}" 2>/dev/null || die "tollgate exited (see tollgate.log)"
        sleep 0.1
    done
    die "tollgate not ready after 20 s"
}
# quick_tollgate [ARGS...]: quick mode in front of the upstream, RATE/s per X-Api-Key, one worker.
quick_tollgate() {
    start_tollgate --listen "127.0.0.1:$TG_PORT" --admin-listen "127.0.0.1:$TG_ADMIN_PORT" \
        --upstream "http://127.0.0.1:$UP_PORT" --limit "${TG_LIMIT:-$RATE/s}" --key "$(key_of tollgate)" \
        --workers 1 --no-store "$@"
}

# write_config FILE: a tollgate config file (one worker, one rule "per-key", one route "load"),
# shaped by these variables when set:
#   CFG_KEY (`key_of tollgate`)  CFG_LIMIT (["RATE/s"])   CFG_RULE   extra [[rules]] lines
#   CFG_SERVER / CFG_LIMITS      extra [server] / [limits] lines
#   CFG_DB (enabled = false)     [database] lines          CFG_ROUTE  upstream (default) or direct
write_config() {
    local limit=${CFG_LIMIT:-"[\"$RATE/s\"]"} route
    if [ "${CFG_ROUTE:-upstream}" = direct ]; then
        route=$'[routes.direct]\nstatus = 200\nbody = "ok\\n"'
    else
        route="upstreams = [\"http://127.0.0.1:$UP_PORT\"]"
    fi
    cat >"$1" <<EOF
[server]
listen = "127.0.0.1:$TG_PORT"
workers = 1
${CFG_SERVER:-}

[admin]
listen = "127.0.0.1:$TG_ADMIN_PORT"

[limits]
${CFG_LIMITS:-}

[log]
access_log = false

[database]
${CFG_DB:-enabled = false}

[[rules]]
name = "per-key"
key = "${CFG_KEY:-$(key_of tollgate)}"
limits = $limit
${CFG_RULE:-}

[[routes]]
name = "load"
path_prefix = "/"
rules = ["per-key"]
$route
EOF
    "$TG_BIN" check-config "$1" >"$WORK/check-config.log" 2>&1 ||
        die "generated config rejected: $(cat "$WORK/check-config.log")"
}

# start_targets [NGINX-LISTEN-OPTS [NGINX-SERVER-EXTRA]]: the upstream, then whichever of nginx/haproxy/tollgate
# TARGETS names (haproxy shaped by the HAPROXY_* variables of start_haproxy_limit; tollgate from
# the file TG_CONFIG when set, else in quick mode with TG_ARGS added to its flags).
TG_ARGS=()
start_targets() {
    check_ports_free "$UP_PORT" "$TG_PORT" "$TG_ADMIN_PORT" "$NGINX_PORT" "$UP_H2_PORT" "$NGINX_H2_PORT"
    case " $TARGETS " in *" haproxy "*) check_ports_free "$HAPROXY_PORT" "$HAPROXY_H2_PORT" ;; esac
    start_upstream
    case " $TARGETS " in *" nginx "*) start_nginx_limit "$@" ;; esac
    case " $TARGETS " in *" haproxy "*) start_haproxy_limit ;; esac
    case " $TARGETS " in *" tollgate "*)
        if [ -n "${TG_CONFIG:-}" ]; then start_tollgate --config "$TG_CONFIG"; else quick_tollgate "${TG_ARGS[@]}"; fi ;;
    esac
    return 0
}

port_of() {
    case "$1" in
    direct) echo "$UP_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    haproxy) echo "$HAPROXY_PORT" ;;
    tollgate) echo "$TG_PORT" ;;
    *) die "unknown target $1" ;;
    esac
}
# url_of TARGET [PATH]: SCHEME for the proxies; the direct upstream speaks plain http only.
url_of() {
    local scheme=$SCHEME
    [ "$1" = direct ] && scheme=http
    echo "$scheme://127.0.0.1:$(port_of "$1")${2:-/}"
}
# h2_url_of TARGET: where the target speaks HTTP/2 (h2c prior knowledge, or h2 over TLS).
h2_url_of() {
    case "$1" in
    direct) echo "http://127.0.0.1:$UP_H2_PORT" ;;
    nginx) [ "$SCHEME" = https ] && echo "https://127.0.0.1:$NGINX_PORT" || echo "http://127.0.0.1:$NGINX_H2_PORT" ;;
    haproxy) [ "$SCHEME" = https ] && echo "https://127.0.0.1:$HAPROXY_PORT" || echo "http://127.0.0.1:$HAPROXY_H2_PORT" ;;
    tollgate) echo "$SCHEME://127.0.0.1:$TG_PORT" ;;
    *) die "unknown target $1" ;;
    esac
}
# The process whose CPU and memory a target's row shows: the proxy; none for direct.
pid_of_target() {
    case "$1" in
    nginx | haproxy | tollgate) echo "${PID_OF[$1]}" ;;
    *) echo "" ;;
    esac
}

# --- probes -------------------------------------------------------------------------------------
tree_pids() { # a PID and its descendants (nginx master and workers)
    local c
    echo "$1"
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree_pids "$c"; done
}
cpu_ticks() { # utime+stime of a process tree, in clock ticks (0 without a PID)
    local total=0 p
    [ -n "$1" ] || { echo 0; return; }
    for p in $(tree_pids "$1"); do
        [ -r "/proc/$p/stat" ] || continue
        total=$((total + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}
status_kb() { # status_kb PID FIELD: VmRSS or VmHWM summed over the tree, in kB
    local total=0 p v
    [ -n "$1" ] || { echo 0; return; }
    for p in $(tree_pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

metrics() { curl -sf "http://127.0.0.1:$TG_ADMIN_PORT/metrics"; }
# metric_sum NAME [LABEL-SUBSTRING]: sum of the series of NAME whose labels contain the substring.
metric_sum() {
    metrics | awk -v m="$1" -v l="${2:-}" '
        { name = $1; sub(/\{.*/, "", name) }
        name == m && index($1, l) { s += $NF }
        END { printf "%.0f", s }'
}
tracked_keys() { metric_sum tollgate_limiter_tracked_keys; }

# --- load runs: each sets R_RPS R_P50 R_P99 (µs) R_TOTAL R_NON2XX R_ERR R_CPU (µs/request of the
#     target's process, "-" for direct) R_RSS (MB, "-" for direct) -----------------------------
to_us() { # wrk latency (812.00us, 1.20ms, 2.01s) -> µs
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        m = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : 1
        printf "%.0f", n * m }'
}
parse_wrk() { # parse_wrk FILE
    local f=$1
    R_RPS=$(awk '$1 == "Requests/sec:" { printf "%.0f", $2 }' "$f")
    R_P50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$f")")
    R_P99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$f")")
    R_TOTAL=$(awk '/requests in/ { print $1 }' "$f")
    R_NON2XX=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f")
    R_NON2XX=${R_NON2XX:-0}
    R_ERR=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$f")
    R_ERR=${R_ERR:-0}
    [ -n "$R_RPS" ] && [ -n "$R_TOTAL" ] || die "no wrk result in $f: $(head -c 400 "$f")"
}
parse_h2load() { # parse_h2load FILE LOGFILE: the summary, and percentiles from the per-request log
    local f=$1 lf=$2
    R_RPS=$(awk '/^finished in/ { gsub(/,/, ""); printf "%.0f", $4 }' "$f")
    R_TOTAL=$(awk '/^requests:/ { print $8 }' "$f")
    R_NON2XX=$(awk '/^status codes:/ { print $6 + $8 + $10 }' "$f")
    R_ERR=$(awk '/^requests:/ { print $10 + $12 + $14 }' "$f")
    [ -n "$R_RPS" ] && [ -n "$R_TOTAL" ] || die "no h2load result in $f: $(head -c 400 "$f")"
    read -r R_P50 R_P99 < <(cut -f3 "$lf" | sort -n | awk '{ v[NR] = $1 }
        END { if (NR == 0) { print "- -"; exit }
              printf "%d %d\n", v[int(NR * 0.50) + (NR * 0.50 > int(NR * 0.50))], v[int(NR * 0.99) + (NR * 0.99 > int(NR * 0.99))] }')
}

# measure_start TARGET before a load run and measure_end TARGET after parsing it (R_TOTAL set).
CPU0=0
measure_start() { CPU0=$(cpu_ticks "$(pid_of_target "$1")"); }
measure_end() { # measure_end TARGET: R_CPU and R_RSS from the ticks since measure_start
    local pid
    pid=$(pid_of_target "$1")
    if [ -z "$pid" ]; then
        R_CPU=- R_CPU_FINE=- R_RSS=-
        return
    fi
    R_CPU_FINE=$(awk -v d=$(($(cpu_ticks "$pid") - CPU0)) -v n="$R_TOTAL" -v h="$CLK_TCK" \
        'BEGIN { printf "%.2f", (n > 0) ? d * 1e6 / h / n : 0 }')
    R_CPU=$(awk -v v="$R_CPU_FINE" 'BEGIN { printf "%.1f", v }')
    R_RSS=$(mb "$(status_kb "$pid" VmRSS)")
}

# wrk_to FILE TARGET LUA SECONDS [WRK-ARGS...]: one wrk run (CONNECTIONS, one thread), bounded.
wrk_to() {
    local out=$1 target=$2 lua=$3 secs=$4
    shift 4
    timeout --foreground $((secs + 60)) "${PIN_GEN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --timeout 5s \
        --latency -s "$LT_DIR/lua/$lua" "$@" "$(url_of "$target")" >"$out" 2>&1 ||
        die "wrk failed against $target: $(tail -n 5 "$out")"
}
# h2load_to FILE URL SECONDS [H2LOAD-ARGS...]: one h2load run, per-request log in FILE.log.
h2load_to() {
    local out=$1 url=$2 secs=$3
    shift 3
    timeout --foreground $((secs + 60)) "${PIN_GEN[@]}" h2load -D "$secs" --log-file="$out.log" "$@" "$url" \
        >"$out" 2>&1 || die "h2load failed against $url: $(tail -n 5 "$out")"
}
warm_up() { # warm_up TARGET LUA [WRK-ARGS...]: WARMUP seconds of unmeasured wrk load
    [ "$WARMUP" -gt 0 ] || return 0
    wrk_to "$WORK/warmup.txt" "$1" "$2" "$WARMUP" "${@:3}"
}

# run_wrk TARGET LUA [WRK-ARGS...]: warm-up, then a measured wrk run; results in R_*.
run_wrk() {
    local target=$1 lua=$2 out="$WORK/wrk-$1-$(basename "$2" .lua)-$RANDOM.txt"
    shift 2
    warm_up "$target" "$lua" "$@"
    measure_start "$target"
    wrk_to "$out" "$target" "$lua" "$DURATION" "$@"
    parse_wrk "$out"
    [ "$R_TOTAL" -gt 0 ] || die "$target answered no request"
    measure_end "$target"
}

# run_h2load TARGET URL [H2LOAD-ARGS...]: DURATION seconds of h2load; results in R_*.
run_h2load() {
    local target=$1 url=$2 out="$WORK/h2load-$1-$RANDOM.txt"
    shift 2
    measure_start "$target"
    h2load_to "$out" "$url" "$DURATION" "$@"
    parse_h2load "$out" "$out.log"
    measure_end "$target"
}

# uri_list FILE BASE-URL: KEYS request URIs /?key=key-NNNNNNN in random order, for h2load -i
# (h2load sends the same header on every request, so its keys travel in the query).
uri_list() {
    awk -v n="$KEYS" -v b="$2" 'BEGIN { for (i = 1; i <= n; i++) printf "%s/?key=key-%07d\n", b, i }' |
        shuf >"$1"
}

# --- report -------------------------------------------------------------------------------------
table_title() { # table_title TITLE
    echo
    echo "### $SCENARIO: $1"
    echo
}
table_header() { # table_header TITLE: the title and the columns of table_row
    table_title "$1"
    echo "| target | req/s | × direct | p50 µs | p99 µs | non-2xx % | errors | proxy CPU µs/req | proxy RSS MB |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
}
declare -A BASE_RPS=()
table_row() { # table_row LABEL [GROUP]: the R_* of the last run; "direct" rows set GROUP's ratio base
    local group=${2:-all}
    case "$1" in direct*) BASE_RPS[$group]=$R_RPS ;; esac
    awk -v t="$1" -v r="$R_RPS" -v b="${BASE_RPS[$group]:-}" -v p50="$R_P50" -v p99="$R_P99" -v n="$R_NON2XX" \
        -v tot="$R_TOTAL" -v e="$R_ERR" -v c="$R_CPU" -v m="$R_RSS" 'BEGIN {
        printf "| %s | %d | %s | %s | %s | %.1f | %d | %s | %s |\n", t, r,
            (b > 0) ? sprintf("%.3f", r / b) : "-", p50, p99, (tot > 0) ? 100 * n / tot : 0, e, c, m }'
}
# compare LUA [WRK-ARGS...]: one wrk run per target in TARGETS, one table row each.
compare() {
    local lua=$1 t
    shift
    for t in $TARGETS; do
        run_wrk "$t" "$lua" "$@"
        table_row "$t"
    done
}
table_footer() {
    echo
    echo "wrk -t1 -c$CONNECTIONS, ${DURATION}s measured after ${WARMUP}s warm-up; limit $RATE r/s per key;" \
        "pinning: ${PIN_GEN[*]:-none} (load) / ${PIN_SRV[*]:-none} (servers); CPU and RSS are the proxy's process (tree)."
}
