#!/usr/bin/env bash
# Runs a command next to a throwaway OpenID provider (the `oidc-provider` npm package, pinned by
# scripts/oidc/package-lock.json):
#
#     scripts/with-oidc.sh cargo test --all-features
#     scripts/with-postgres.sh scripts/with-oidc.sh cargo test --all-features
#
# Installs Debian's `nodejs` and `npm` packages when `node` is missing, runs `npm ci` into scripts/oidc/node_modules
# (git-ignored; again only when package-lock.json changed), starts scripts/oidc/server.js on an ephemeral
# 127.0.0.1 port, and runs the command with:
#
#     TOWER_MCP_AUTH_TEST_OIDC_ISSUER  the provider's issuer URL (discovery at /.well-known/openid-configuration)
#
# See scripts/oidc/server.js for its clients, resources and the /admin/ test controls (key rotation, revocation).
# The provider is stopped when the command ends, whatever its outcome; the script exits with the command's status.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
oidc="$root/scripts/oidc"

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "with-oidc: installing Node.js (Debian packages nodejs, npm)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi

stamp="$oidc/node_modules/.package-lock.sha256"
lock=$(sha256sum "$oidc/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock" ]; then
    echo "with-oidc: npm ci in scripts/oidc" >&2
    (cd "$oidc" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$lock" >"$stamp"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/tower-mcp-auth-oidc.XXXXXX")
node "$oidc/server.js" "$dir/issuer" >"$dir/server.log" 2>&1 &
pid=$!

cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
    if [ -s "$dir/issuer" ]; then
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "with-oidc: the provider exited" >&2
        cat "$dir/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -s "$dir/issuer" ]; then
    echo "with-oidc: the provider did not start within 30 s" >&2
    cat "$dir/server.log" >&2
    exit 1
fi

export TOWER_MCP_AUTH_TEST_OIDC_ISSUER
TOWER_MCP_AUTH_TEST_OIDC_ISSUER=$(cat "$dir/issuer")
version=$(node -p "require('$oidc/node_modules/oidc-provider/package.json').version")
echo "with-oidc: oidc-provider $version at $TOWER_MCP_AUTH_TEST_OIDC_ISSUER (node $(node --version))" >&2

status=0
"$@" || status=$?
exit "$status"
