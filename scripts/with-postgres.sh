#!/usr/bin/env bash
# Runs a command next to a throwaway PostgreSQL server that holds LiteLLM's key table:
#
#     scripts/with-postgres.sh cargo test --all-features
#
# Installs Debian's `postgresql` package when no server binaries are found under /usr/lib/postgresql/*/bin,
# creates a cluster in a temporary directory (as the `postgres` user when run as root: initdb refuses root),
# listening on a Unix socket in that directory only, creates the database `litellm_test` with the tables from
# tests/fixtures/litellm_verification_token.sql and tests/fixtures/litellm_mcp_access.sql, and runs the
# command with:
#
#     TOWER_MCP_AUTH_TEST_DATABASE_URL  a connection URL for that database
#     TOWER_MCP_AUTH_TEST_PG_CTL        a script taking `stop` or `start`, for the tests of a database outage
#     TOWER_MCP_AUTH_TEST_LITELLM_DATABASE_URL  a second database, `litellm_schema`, holding LiteLLM's own
#                                       schema from its migrations (scripts/litellm-schema.sh)
#
# The server is stopped and the directory removed when the command ends, whatever its outcome; the script exits
# with the command's status.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
fixtures=("$root/tests/fixtures/litellm_verification_token.sql" "$root/tests/fixtures/litellm_mcp_access.sql")

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

find_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
        echo "$dir"
    fi
}

bindir=$(find_bindir)
if [ -z "$bindir" ]; then
    echo "with-postgres: installing PostgreSQL (Debian package postgresql)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
    bindir=$(find_bindir)
    if [ -z "$bindir" ]; then
        echo "with-postgres: no initdb under /usr/lib/postgresql/*/bin after installing" >&2
        exit 1
    fi
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/tower-mcp-auth-pg.XXXXXX")
run_as=""
if [ "$(id -u)" -eq 0 ]; then
    pg_user=postgres
    id -u "$pg_user" >/dev/null 2>&1 || pg_user=nobody
    chown "$pg_user" "$dir"
    run_as="runuser -u $pg_user --"
fi

# The control script the tests use; also what this script uses to start and stop the server.
ctl="$dir/pg"
cat >"$ctl" <<EOF
#!/bin/sh
case "\$1" in
    start) exec $run_as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null ;;
    stop) exec $run_as "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null ;;
    *) echo "usage: \$0 start|stop" >&2; exit 2 ;;
esac
EOF
chmod 755 "$ctl"

cleanup() {
    "$ctl" stop 2>/dev/null || $run_as "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

if ! $run_as "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    exit 1
fi
# No TCP at all: the socket lives in the private directory, so no port can clash with another server.
cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

if ! "$ctl" start; then
    cat "$dir/server.log" >&2
    exit 1
fi

psql=("$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -U postgres)
"${psql[@]}" -d postgres -c 'CREATE DATABASE litellm_test'
for fixture in "${fixtures[@]}"; do
    "${psql[@]}" -d litellm_test -f "$fixture"
done

export TOWER_MCP_AUTH_TEST_DATABASE_URL="postgres://postgres@localhost/litellm_test?host=$dir"

# A second database with LiteLLM's own schema, from its migrations: the tests that write rows as LiteLLM writes
# them use it. Without it (the package cannot be fetched), those tests skip and say why.
"${psql[@]}" -d postgres -c 'CREATE DATABASE litellm_schema'
schema_url="postgres://postgres@localhost/litellm_schema?host=$dir"
if PSQL="$bindir/psql" "$root/scripts/litellm-schema.sh" "$schema_url"; then
    export TOWER_MCP_AUTH_TEST_LITELLM_DATABASE_URL="$schema_url"
else
    echo "with-postgres: LiteLLM's schema is not available; TOWER_MCP_AUTH_TEST_LITELLM_DATABASE_URL unset" >&2
fi
export TOWER_MCP_AUTH_TEST_PG_CTL="$ctl"
echo "with-postgres: PostgreSQL $("$bindir/postgres" -V | awk '{print $3}') on $dir" >&2

status=0
"$@" || status=$?
exit "$status"
