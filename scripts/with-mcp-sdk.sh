#!/usr/bin/env bash
# Runs a command with the official MCP Python SDK installed in a virtual environment (pinned by
# scripts/mcp-sdk/requirements.txt):
#
#     scripts/with-mcp-sdk.sh cargo test --all-features
#
# Creates the environment at ${MCP_SDK_VENV:-target/mcp-sdk-venv} (again only when requirements.txt changed)
# and runs the command with:
#
#     TOWER_MCP_AUTH_TEST_PYTHON  the environment's python, which can `import mcp`
#
# Tests that drive the SDK's clients skip, saying why, when the variable is unset. The script exits with the
# command's status.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
requirements="$root/scripts/mcp-sdk/requirements.txt"
venv=${MCP_SDK_VENV:-$root/target/mcp-sdk-venv}

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "with-mcp-sdk: installing the MCP Python SDK into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
fi
"$venv/bin/python" -c 'import mcp' >/dev/null

export TOWER_MCP_AUTH_TEST_PYTHON="$venv/bin/python"
exec "$@"
