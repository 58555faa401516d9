#!/usr/bin/env bash
# CPU time per proxied MCP request: the gateway example side by side with nginx, in one run.
# GATEWAY_BIN runs another build of the gateway (for an A/B of a change) in place of target/release.
#
#     scripts/bench-cpu-nginx.sh      (env: DURATION=10s CONNECTIONS=16 ROUNDS=3 GATEWAY_ARGS=)
#
# One upstream, the demo MCP server (rmcp, Streamable HTTP, `cargo run --release --example bench_server --
# mcp-upstream`), behind two proxies on loopback:
#   - the gateway example (release build; passthrough route `/mcp/demo`, so every request is authenticated
#     and its token forwarded), with Tokio's worker threads set by GATEWAY_WORKERS (default 1, as nginx has one
#     worker process here);
#   - nginx from Debian's package (installed when missing): one worker, keep-alive upstream connections,
#     buffering off, access log on (its default), no authentication at all.
# wrk drives the same `tools/list` load (one MCP session per proxy, a new JSON-RPC id per request) at the same
# concurrency through each, alternating rounds. Each proxy's CPU time (utime + stime from /proc/PID/stat, every
# thread; nginx's master and worker) is read before and after each round and divided by the round's successful
# requests. Prints a table and the ratio ours / nginx.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
ROUNDS=${ROUNDS:-3}
GATEWAY_WORKERS=${GATEWAY_WORKERS:-1}

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
source scripts/bench-lib.sh

start "$BIN/bench_server" mcp-upstream
UPSTREAM=$URL
UPSTREAM_HOSTPORT=${UPSTREAM#http://}
# shellcheck disable=SC2086
TOKIO_WORKER_THREADS=$GATEWAY_WORKERS start "${GATEWAY_BIN:-$GATEWAY_BINARY}" --listen 127.0.0.1:0 --key sk-bench \
    --upstream "demo=$UPSTREAM/mcp" --passthrough demo ${GATEWAY_ARGS:-}
GATEWAY=$URL
GATEWAY_PID=$PID

NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log $work/nginx-access.log;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    upstream mcp { server $UPSTREAM_HOSTPORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /mcp {
            proxy_pass http://mcp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $UPSTREAM_HOSTPORT;
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
CONF
/usr/sbin/nginx -p "$work/nginx" -c "$work/nginx.conf"
for _ in $(seq 1 50); do [ -s "$work/nginx.pid" ] && break; sleep 0.1; done
NGINX_MASTER=$(cat "$work/nginx.pid")
pids+=("$NGINX_MASTER")
NGINX="http://127.0.0.1:$NGINX_PORT"

GATEWAY_SESSION=$(session "$GATEWAY/mcp/demo")
NGINX_SESSION=$(session "$NGINX/mcp")

nginx_pids() { echo "$NGINX_MASTER" $(pgrep -P "$NGINX_MASTER"); }

RESULTS="$work/results"
# round LABEL URL SESSION PIDS... : one wrk run; appends "LABEL ok_requests cpu_ticks rps" to $RESULTS.
round() {
    local label=$1 url=$2 session=$3
    shift 3
    local before after out total non2xx errors rps
    before=$(ticks "$@")
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${MCP_WRK[@]}" -H "mcp-session-id: $session" "$url")
    after=$(ticks "$@")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
    errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    echo "$label $((total - ${non2xx:-0} - ${errors:-0})) $((after - before)) $rps" >>"$RESULTS"
}

echo "# tools/list: $ROUNDS rounds of $DURATION each, $CONNECTIONS connections, wrk -t1, alternating" >&2
for _ in $(seq 1 "$ROUNDS"); do
    round gateway "$GATEWAY/mcp/demo" "$GATEWAY_SESSION" "$GATEWAY_PID"
    # shellcheck disable=SC2046
    round nginx "$NGINX/mcp" "$NGINX_SESSION" $(nginx_pids)
done

python3 - "$RESULTS" "$(getconf CLK_TCK)" <<'PY'
import collections, sys
rounds = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, ok, ticks, rps = line.split()
    rounds[label].append((int(ok), int(ticks), float(rps)))
hz = int(sys.argv[2])
def per_request(label):
    ok = sum(r[0] for r in rounds[label])
    if ok == 0:
        sys.exit(f"{label}: no successful request")
    ticks = sum(r[1] for r in rounds[label])
    return ticks / hz / ok * 1e6, ok
print("| proxy | successful requests | CPU µs / request | requests/s per round |")
print("|---|---:|---:|---|")
for label in ("gateway", "nginx"):
    us, ok = per_request(label)
    print(f"| {label} | {ok} | {us:.1f} | {', '.join(f'{r[2]:.0f}' for r in rounds[label])} |")
ours, _ = per_request("gateway")
theirs, _ = per_request("nginx")
print(f"\nCPU per request, gateway / nginx: x{ours / theirs:.3f}")
PY
