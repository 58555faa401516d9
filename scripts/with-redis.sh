#!/usr/bin/env bash
# Runs a command next to a throwaway Redis server, for the tests of rate limits shared by gateway replicas:
#
#     scripts/with-redis.sh cargo test --all-features
#
# Installs Debian's `redis-server` package when no redis-server binary is found (on PATH or
# /usr/bin/redis-server), without starting its system service, starts a server on a free loopback port in a
# temporary directory (no persistence, no daemon), and runs the command with:
#
#     TOWER_MCP_AUTH_TEST_REDIS         the server's URL (redis://127.0.0.1:PORT)
#     TOWER_MCP_AUTH_TEST_REDIS_SERVER  the redis-server binary, for tests that start and stop their own server
#
# Tests skip, saying why, when the variables are unset. The server is stopped and the directory removed when
# the command ends, whatever its outcome; the script exits with the command's status.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

find_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        command -v redis-server
    elif [ -x /usr/bin/redis-server ]; then
        echo /usr/bin/redis-server
    fi
}

redis=$(find_redis)
if [ -z "$redis" ]; then
    echo "with-redis: installing Redis (Debian package redis-server)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    # The package's service must not start: the tests run their own server on a loopback port.
    policy=/usr/sbin/policy-rc.d
    added_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        added_policy=1
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
    if [ -n "$added_policy" ]; then
        $sudo rm -f "$policy"
    fi
    redis=$(find_redis)
    if [ -z "$redis" ]; then
        echo "with-redis: no redis-server binary after installing" >&2
        exit 1
    fi
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/tower-mcp-auth-redis.XXXXXX")
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$redis" --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no --daemonize no \
    --logfile "$dir/redis.log" &
pid=$!
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "with-redis: the server did not start:" >&2
        cat "$dir/redis.log" >&2 || true
        exit 1
    fi
    sleep 0.1
done

export TOWER_MCP_AUTH_TEST_REDIS="redis://127.0.0.1:$port"
export TOWER_MCP_AUTH_TEST_REDIS_SERVER="$redis"
echo "with-redis: $("$redis" --version) on 127.0.0.1:$port" >&2
status=0
"$@" || status=$?
exit "$status"
