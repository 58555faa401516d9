#!/usr/bin/env bash
# Creates LiteLLM's own database schema in a PostgreSQL database by applying LiteLLM's migrations, as the
# proxy does at start-up:
#
#     scripts/litellm-schema.sh postgres://user@host/db
#
# The migrations are the SQL files shipped in the PyPI package `litellm-proxy-extras`, pinned to the version
# LiteLLM 1.108.7 requires (its metadata: `litellm-proxy-extras==0.4.110`). The package is downloaded once with
# pip into ${LITELLM_SCHEMA_CACHE:-target/litellm-proxy-extras-0.4.110} and its migrations applied in order
# (their directory names sort by date) with psql (PSQL, else the newest under /usr/lib/postgresql/*/bin, else
# PATH). Exits non-zero when the package cannot be fetched or a migration fails.
set -euo pipefail

version=0.4.110
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LITELLM_SCHEMA_CACHE:-$root/target/litellm-proxy-extras-$version}

if [ "$#" -ne 1 ]; then
    echo "usage: $0 DATABASE_URL" >&2
    exit 2
fi
url=$1

psql=${PSQL:-}
if [ -z "$psql" ]; then
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/psql" ]; then
        psql="$dir/psql"
    else
        psql=psql
    fi
fi

migrations="$cache/litellm_proxy_extras/migrations"
if [ ! -d "$migrations" ]; then
    echo "litellm-schema: fetching litellm-proxy-extras==$version" >&2
    mkdir -p "$cache"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        "litellm-proxy-extras==$version" -d "$cache/download"
    python3 - "$cache" <<'PY'
import pathlib, sys, zipfile
cache = pathlib.Path(sys.argv[1])
wheel = next((cache / "download").glob("litellm_proxy_extras-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith("litellm_proxy_extras/migrations/"):
            archive.extract(name, cache)
PY
fi

count=0
for migration in "$migrations"/*/migration.sql; do
    # Some migrations notice what already exists, or use SET LOCAL outside a transaction: quiet, not errors.
    "$psql" -X -q -v ON_ERROR_STOP=1 "$url" -f "$migration" >/dev/null 2>&1 || {
        echo "litellm-schema: $migration failed:" >&2
        "$psql" -X -q -v ON_ERROR_STOP=1 "$url" -f "$migration" >&2 || true
        exit 1
    }
    count=$((count + 1))
done
echo "litellm-schema: applied $count migrations of litellm-proxy-extras $version" >&2
