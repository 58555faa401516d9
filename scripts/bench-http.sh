#!/usr/bin/env bash
# HTTP-level benchmarks with wrk on loopback, bare and layered servers alternating in one run:
#   1. a hello handler, bare vs behind McpAuthLayer (cache hit on a gateway key; passthrough bearer);
#   2. coalescing: one passthrough token from many connections against a 5 ms key store, store calls counted;
#   3. end to end: MCP tools/list through the gateway example vs directly against the same rmcp upstream.
# Usage: scripts/bench-http.sh   (env: DURATION=5s CONNECTIONS=64 ROUNDS=3 COALESCE_DURATION=10s)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
COALESCE_DURATION=${COALESCE_DURATION:-10s}

if ! command -v wrk >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
source scripts/bench-lib.sh

# load LABEL URL [wrk args...] : one wrk run; appends "LABEL rps p99_ms non2xx" to $RESULTS.
load() {
    local label=$1 url=$2
    shift 2
    local out rps p99 errors
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
    errors=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
    echo "$label $rps $p99 ${errors:-0}" >>"$RESULTS"
}

RESULTS="$work/results"
start "$BIN/bench_server" bare
BARE=$URL
start "$BIN/bench_server" layer
LAYER=$URL

echo "# 1. hello handler: $ROUNDS rounds of $DURATION, $CONNECTIONS connections, wrk -t1 (alternating)" >&2
for round in $(seq 1 "$ROUNDS"); do
    load bare_key "$BARE/mcp/github" -H 'x-litellm-api-key: sk-bench'
    load layer_cache_hit "$LAYER/mcp/github" -H 'x-litellm-api-key: sk-bench'
    load bare_bearer "$BARE/mcp/atlassian" -H 'authorization: Bearer bench-oauth-token'
    load layer_passthrough "$LAYER/mcp/atlassian" -H 'authorization: Bearer bench-oauth-token'
done

echo "# 2. coalescing: $COALESCE_DURATION, $CONNECTIONS connections, one passthrough token, 5 ms store" >&2
start "$BIN/bench_server" coalesce
COALESCE=$URL
DURATION=$COALESCE_DURATION load coalesce_passthrough "$COALESCE/mcp/atlassian" -H 'authorization: Bearer one-hot-token'
STORE_CALLS=$(curl -s "$COALESCE/stats" | awk '{print $2}')

echo "# 3. MCP tools/list through the gateway vs direct" >&2
start "$BIN/bench_server" mcp-upstream
UPSTREAM=$URL
start "$GATEWAY_BINARY" --listen 127.0.0.1:0 --key sk-bench --upstream "demo=$UPSTREAM/mcp" --passthrough demo
GATEWAY=$URL
DIRECT_SESSION=$(session "$UPSTREAM/mcp")
GATEWAY_SESSION=$(session "$GATEWAY/mcp/demo")
mcp_load() {
    load "$1" "$2" "${MCP_WRK[@]}" -H "mcp-session-id: $3"
}
for round in $(seq 1 "$ROUNDS"); do
    mcp_load mcp_direct "$UPSTREAM/mcp" "$DIRECT_SESSION"
    mcp_load mcp_gateway "$GATEWAY/mcp/demo" "$GATEWAY_SESSION"
done

python3 - "$RESULTS" "$STORE_CALLS" "$COALESCE_DURATION" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, rps, p99, errors = line.split()
    runs[label].append((float(rps), float(p99), int(errors)))
def med(label, i):
    return statistics.median(r[i] for r in runs[label])
print(f"| run | requests/s (median) | p99 ms (median) | non-2xx | runs |")
print(f"|---|---:|---:|---:|---:|")
for label, rs in runs.items():
    print(f"| {label} | {med(label, 0):.0f} | {med(label, 1):.2f} | {sum(r[2] for r in rs)} | {len(rs)} |")
print()
for base, layer in [("bare_key", "layer_cache_hit"), ("bare_bearer", "layer_passthrough"), ("mcp_direct", "mcp_gateway")]:
    if runs.get(base) and runs.get(layer):
        print(f"{layer} / {base}: throughput x{med(layer, 0) / med(base, 0):.3f}, p99 x{med(layer, 1) / med(base, 1):.3f}")
rps = med("coalesce_passthrough", 0)
print(f"coalescing: {rps:.0f} requests/s for {sys.argv[3]} with one passthrough token; key store calls: {sys.argv[2]}")
PY
