#!/usr/bin/env bash
# Runs a command with nginx available, for the tests that put gateway replicas behind a real load balancer:
#
#     scripts/with-nginx.sh cargo test --all-features
#
# Installs Debian's `nginx` package when no nginx binary is found (on PATH or /usr/sbin/nginx), without
# starting its system service, and runs the command with:
#
#     TOWER_MCP_AUTH_TEST_NGINX  the nginx binary
#
# The tests start their own nginx (no daemon, no master process) with a generated configuration on loopback
# ports, and skip, saying why, when the variable is unset. The script exits with the command's status.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

find_nginx() {
    if command -v nginx >/dev/null 2>&1; then
        command -v nginx
    elif [ -x /usr/sbin/nginx ]; then
        echo /usr/sbin/nginx
    fi
}

nginx=$(find_nginx)
if [ -z "$nginx" ]; then
    echo "with-nginx: installing nginx (Debian package nginx)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    # The package's service must not start: the tests run their own nginx on loopback ports.
    policy=/usr/sbin/policy-rc.d
    added_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        added_policy=1
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx >/dev/null
    if [ -n "$added_policy" ]; then
        $sudo rm -f "$policy"
    fi
    nginx=$(find_nginx)
    if [ -z "$nginx" ]; then
        echo "with-nginx: no nginx binary after installing" >&2
        exit 1
    fi
fi

export TOWER_MCP_AUTH_TEST_NGINX="$nginx"
echo "with-nginx: $("$nginx" -v 2>&1)" >&2
exec "$@"
