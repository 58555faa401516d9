#!/usr/bin/env bash
# What the rate limiter costs per proxied MCP request, with each backend, side by side in one run.
#
#     scripts/bench-limits.sh      (env: DURATION=10s CONNECTIONS=16 ROUNDS=3)
#
# One upstream, the demo MCP server (rmcp, `bench_server mcp-upstream`), behind three gateways (release build
# with the feature `redis`, one Tokio worker thread each, passthrough route `/mcp/demo`):
#   - none: no rate limit;
#   - in-process: a per-caller and a per-upstream limit (two buckets per request), counted by governor;
#   - redis: the same two limits counted in a Redis server from Debian's package (installed when missing),
#     started on a loopback port for the run.
# The limits are far above the load, so every request is counted and admitted. wrk drives the same
# `tools/list` load (one MCP session per gateway, a new JSON-RPC id per request) through each, alternating
# rounds. Each gateway's CPU time (utime + stime of every thread, /proc/PID/stat) and Redis's are read before
# and after each round and divided by the round's successful requests. Prints a table: requests/s, CPU per
# request of the gateway, of Redis, and the difference to `none`.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
ROUNDS=${ROUNDS:-3}

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
GATEWAY_FEATURES=redis
source scripts/bench-lib.sh

REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$(command -v redis-server || echo /usr/bin/redis-server)" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$work" --logfile "$work/redis.log" &
REDIS_PID=$!
pids+=("$REDIS_PID")

start "$BIN/bench_server" mcp-upstream
UPSTREAM=$URL

# gateway LABEL YAML_TAIL : a gateway on the upstream with the config file's extra lines; sets ${LABEL}_URL etc.
gateway() {
    local label=$1 tail=$2
    printf 'mcp_servers:\n  demo:\n    url: %s/mcp\n    oauth_passthrough: true\n%b' "$UPSTREAM" "$tail" \
        >"$work/$label.yaml"
    TOKIO_WORKER_THREADS=1 start "$GATEWAY_BINARY" --listen 127.0.0.1:0 --key sk-bench --config "$work/$label.yaml"
    printf -v "${label}_URL" '%s' "$URL"
    printf -v "${label}_PID" '%s' "$PID"
}
LIMITS='    rate_limit: {rpm: 6000000}\ngateway_settings:\n  rate_limits:\n    per_caller: {rpm: 6000000}\n'
gateway none ''
gateway local "$LIMITS"
gateway redis "${LIMITS}general_settings:\n  redis_url: redis://127.0.0.1:$REDIS_PORT\n"

RESULTS="$work/results"
# round LABEL URL PID : one wrk run; appends "LABEL ok_requests gateway_ticks redis_ticks rps" to $RESULTS.
round() {
    local label=$1 url=$2 pid=$3 session before after rbefore rafter out total non2xx errors rps
    session=$(session "$url")
    before=$(ticks "$pid")
    rbefore=$(ticks "$REDIS_PID")
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${MCP_WRK[@]}" -H "mcp-session-id: $session" "$url")
    after=$(ticks "$pid")
    rafter=$(ticks "$REDIS_PID")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
    errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    if [ -n "${non2xx:-}" ]; then
        echo "$label: $non2xx answers were not 2xx (a limit refused?)" >&2
        exit 1
    fi
    echo "$label $((total - ${errors:-0})) $((after - before)) $((rafter - rbefore)) $rps" >>"$RESULTS"
}

echo "# tools/list: $ROUNDS rounds of $DURATION each, $CONNECTIONS connections, wrk -t1, alternating" >&2
for _ in $(seq 1 "$ROUNDS"); do
    round none "$none_URL/mcp/demo" "$none_PID"
    round in-process "$local_URL/mcp/demo" "$local_PID"
    round redis "$redis_URL/mcp/demo" "$redis_PID"
done

python3 - "$RESULTS" "$(getconf CLK_TCK)" <<'PY'
import collections, sys
rounds = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, ok, ticks, redis, rps = line.split()
    rounds[label].append((int(ok), int(ticks), int(redis), float(rps)))
hz = int(sys.argv[2])
def per_request(label, column):
    ok = sum(r[0] for r in rounds[label])
    if ok == 0:
        sys.exit(f"{label}: no successful request")
    return sum(r[column] for r in rounds[label]) / hz / ok * 1e6
base = per_request("none", 1)
print("| limiter | requests/s per round | gateway CPU µs / request | × none | Redis CPU µs / request |")
print("|---|---|---:|---:|---:|")
for label in ("none", "in-process", "redis"):
    us = per_request(label, 1)
    redis = per_request(label, 2) if label == "redis" else 0.0
    rps = ", ".join(f"{r[3]:.0f}" for r in rounds[label])
    print(f"| {label} | {rps} | {us:.1f} | {us / base:.3f} | {redis:.1f} |")
PY
