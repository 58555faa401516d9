#!/usr/bin/env bash
# Instructions and allocations per proxied MCP request, the gateway beside a bare hyper proxy, in one run.
#
#     scripts/bench-gateway-instructions.sh      (env: REQUESTS=200, GATEWAY_BIN for another build, GATEWAY_ARGS=,
#                                                 KEEP=DIR keeps the callgrind files, ONLY=LABEL measures one proxy)
#
# One upstream, the demo MCP server (rmcp, `bench_server mcp-upstream`, not measured), behind three proxies, each
# run under `valgrind --tool=callgrind` with one Tokio worker thread:
#   - floor: `gateway/examples/floor_proxy.rs`, a minimal hyper 1.x reverse proxy (no auth, no routing, no log);
#   - gateway-key: `mcp-gateway`, route `keyed` admitted by the gateway key, the upstream's credential added by
#     the gateway;
#   - gateway-passthrough: `mcp-gateway`, route `demo`, the client's own bearer token passed through.
# The client opens one keep-alive connection, initializes one MCP session (initialize, notifications/initialized),
# then sends REQUESTS `tools/list` (a new JSON-RPC id each) and ends. Each proxy is run twice, with REQUESTS and
# 2 x REQUESTS; the difference of the two runs divided by REQUESTS is the cost of one `tools/list`, without
# start-up, the session's set-up and the first requests' warm-up. Allocations are the calls into the Rust
# allocator (`__rust_alloc`, `__rust_alloc_zeroed`, `__rust_realloc`) in callgrind's call graph, so they count
# the same whichever global allocator is linked. One-time initialisations are left out of both runs (among them a
# clock calibration that runs for a fixed wall time, hence a varying number of instructions); so counted, runs
# repeat to within 0.2 %, whatever else the machine runs. Prints a table and the ratios to the floor.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-200}
if ! command -v valgrind >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
# shellcheck source=scripts/bench-lib.sh
BENCH_EXAMPLES=floor_proxy source scripts/bench-lib.sh
GATEWAY=${GATEWAY_BIN:-$GATEWAY_BINARY}

start "$BIN/bench_server" mcp-upstream
UPSTREAM=$URL

# drive URL HEADER... : one keep-alive connection: the session's set-up, then $REQUESTS x COUNT tools/list.
drive() {
    python3 - "$@" <<'PY'
import http.client, json, os, sys, urllib.parse
url, count, headers = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2]), dict(h.split(": ", 1) for h in sys.argv[3:])
headers.update({"content-type": "application/json", "accept": "application/json, text/event-stream"})
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
def post(body, session=None):
    extra = {"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"} if session else {}
    conn.request("POST", url.path, json.dumps(body), {**headers, **extra})
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        sys.exit(f"{url.path}: {response.status} {data[:200]!r}")
    return response, data
response, _ = post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}})
session = response.getheader("mcp-session-id")
post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
for i in range(count):
    _, data = post({"jsonrpc": "2.0", "id": i + 1, "method": "tools/list", "params": {}}, session)
    if b'"tools"' not in data:
        sys.exit(f"tools/list: unexpected answer {data[:200]!r}")
PY
}

# measure LABEL PATH "HEADER"... -- PROXY ARGS... : the proxy under callgrind for REQUESTS and 2 x REQUESTS
# requests; appends "LABEL instructions allocations" per request to $work/results.
measure() {
    local label=$1 path=$2 headers=() n out
    shift 2
    while [ "$1" != -- ]; do headers+=("$1"); shift; done
    shift
    for n in 1 2; do
        out="$work/$label.$n.callgrind"
        TOKIO_WORKER_THREADS=1 start valgrind --tool=callgrind --callgrind-out-file="$out" "$@"
        drive "$URL$path" $((n * REQUESTS)) "${headers[@]}"
        kill -TERM "$PID"
        wait "$PID" || true
    done
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work/$label".[12].callgrind "$KEEP/"; fi
    python3 - "$label" "$REQUESTS" "$work/$label.1.callgrind" "$work/$label.2.callgrind" >>"$work/results" <<'PY'
import re, subprocess, sys
ALLOC = {f"{p}{n}" for p in ("", "__rustc::") for n in ("__rust_alloc", "__rust_alloc_zeroed", "__rust_realloc")}
def once(path):
    # One-time initialisations (`once_cell`): among them quanta's clock calibration (the metrics exporter's
    # clock), which reads the clock for a fixed wall time and so runs a different number of instructions in each
    # process (millions, slowed by valgrind). Start-up work in any case; left out of both runs.
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    pattern = re.compile(r"\s*([\d,]+) \([ \d.]+%\)\s+\S*:once_cell::imp::initialize_or_wait \[")
    return sum(int(m.group(1).replace(",", "")) for m in map(pattern.match, out.splitlines()) if m)
def count(path):
    names, total, allocs, callee = {}, None, 0, None
    for line in open(path, errors="replace"):
        if line.startswith(("fn=", "cfn=")):
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
            if m.group(2):
                names[m.group(1)] = m.group(2)
            if line.startswith("cfn="):
                callee = names.get(m.group(1))
        elif line.startswith("calls=") and callee in ALLOC:
            allocs += int(line[6:].split()[0])
        elif line.startswith("summary:"):
            total = int(line.split()[1])
    return total - once(path), allocs
label, n = sys.argv[1], int(sys.argv[2])
(i1, a1), (i2, a2) = count(sys.argv[3]), count(sys.argv[4])
print(label, (i2 - i1) / n, (a2 - a1) / n)
PY
}

echo "# $REQUESTS and $((2 * REQUESTS)) tools/list per proxy under callgrind (slow: a few minutes)" >&2
measured() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }
measured floor && measure floor /mcp "$TOKEN" -- "$BIN/floor_proxy" "$UPSTREAM"
# shellcheck disable=SC2086
GATEWAY_CMD=("$GATEWAY" --listen 127.0.0.1:0 --key sk-bench --upstream "demo=$UPSTREAM/mcp" --passthrough demo
    --upstream "keyed=$UPSTREAM/mcp" --upstream-auth "keyed=bearer_token:bench-oauth-token" ${GATEWAY_ARGS:-})
measured gateway-key && measure gateway-key /mcp/keyed 'x-litellm-api-key: sk-bench' -- "${GATEWAY_CMD[@]}"
measured gateway-passthrough && measure gateway-passthrough /mcp/demo "$TOKEN" -- "${GATEWAY_CMD[@]}"

python3 - "$work/results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    label, ir, allocs = line.split()
    rows[label] = (float(ir), float(allocs))
floor = rows["floor"][0] if "floor" in rows else float("nan")
print("| proxy | instructions / request | × floor | allocations / request |")
print("|---|---:|---:|---:|")
for label, (ir, allocs) in rows.items():
    print(f"| {label} | {ir:,.0f} | {ir / floor:.2f} | {allocs:.1f} |")
PY
