# Shared by the benchmark scripts (bench-http.sh, bench-cpu-nginx.sh, bench-limits.sh, bench-gateway-instructions.sh); sourced from the repository root.
# Builds the benchmark servers ($BIN) and the gateway ($GATEWAY_BINARY), makes a scratch directory ($work) removed on exit with every server in $pids
# killed, and provides `start`, `ticks`, `session` and the wrk arguments of the MCP tools/list load ($MCP_WRK).
# shellcheck shell=bash

# GATEWAY_FEATURES: the gateway's cargo features for this build (bench-limits.sh needs `redis`).
# BENCH_EXAMPLES: further examples to build (bench-gateway-instructions.sh needs `floor_proxy`).
examples=(--example bench_server)
for example in ${BENCH_EXAMPLES:-}; do examples+=(--example "$example"); done
cargo build --release -p mcp-gateway ${GATEWAY_FEATURES:+--features "$GATEWAY_FEATURES"} "${examples[@]}" \
    --bin mcp-gateway >&2
BIN=${CARGO_TARGET_DIR:-target}/release/examples
GATEWAY_BINARY=${CARGO_TARGET_DIR:-target}/release/mcp-gateway

work=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# start ARGS... : runs a server, waits (up to 60 s: a server under valgrind is slow to start) for its
# `listening on` line, sets $URL and $PID.
start() {
    local log="$work/$RANDOM.log"
    "$@" >"$log" 2>/dev/null &
    PID=$!
    pids+=("$PID")
    for _ in $(seq 1 600); do
        if grep -q '^listening on ' "$log"; then
            URL=$(sed -n 's/^listening on //p' "$log" | head -n 1)
            return
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server did not start: $*" >&2
    exit 1
}

# ticks PID... : CPU ticks (utime + stime) of the given processes, all threads.
ticks() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}

TOKEN='authorization: Bearer bench-oauth-token'
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"wrk","version":"0"}}}'
# session URL : opens an MCP session at URL (initialize + notifications/initialized), prints its id.
session() {
    local url=$1 id
    id=$(curl -s -D - -o /dev/null "$url" -H "$TOKEN" -H 'content-type: application/json' \
        -H 'accept: application/json, text/event-stream' -d "$INIT" | awk -F': ' 'tolower($1) == "mcp-session-id" {print $2}' | tr -d '\r')
    curl -s -o /dev/null "$url" -H "$TOKEN" -H "mcp-session-id: $id" -H 'mcp-protocol-version: 2025-06-18' \
        -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
        -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
    if [ -z "$id" ]; then
        echo "no MCP session through $url" >&2
        exit 1
    fi
    echo "$id"
}

LUA="$work/tools-list.lua"
cat >"$LUA" <<'LUA'
-- Each request has its own JSON-RPC id: the server answers concurrent requests of one session by id.
local id = 1000
request = function()
    id = id + 1
    return wrk.format("POST", nil, nil, '{"jsonrpc":"2.0","id":' .. id .. ',"method":"tools/list","params":{}}')
end
LUA
# wrk arguments of the tools/list load; add `-H "mcp-session-id: $(session URL)"`.
# shellcheck disable=SC2034
MCP_WRK=(-s "$LUA" -H "$TOKEN" -H 'mcp-protocol-version: 2025-06-18' -H 'content-type: application/json'
    -H 'accept: application/json, text/event-stream')
