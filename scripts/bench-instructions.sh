#!/usr/bin/env bash
# Instructions per request under callgrind: benches/instructions.rs (gungraun), printed as the ratio table of
# BENCHMARKS.md. Counts are repeatable whatever else the machine is doing, so a change of a few percent is real.
#
#     scripts/bench-instructions.sh
#
# Installs valgrind (Debian's package) and gungraun-runner (the version the gungraun dev-dependency pins) when
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
version=$(sed -n 's/^gungraun = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
if [ "$(gungraun-runner --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
    cargo install gungraun-runner --version "$version" --locked
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo bench --bench instructions >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
python3 - "$out" <<'PY'
import re, sys
out = open(sys.argv[1]).read()
counts = {}
name = None
for line in out.splitlines():
    m = re.search(r"per_request (\w+):", line)
    if m:
        name = m.group(1)
    m = re.match(r"\s+Instructions:\s+(\d+)", line)
    if m and name:
        counts[name] = int(m.group(1))
        name = None
anchor = counts["tower_http_anchor"]
targets = {"key": 1.5, "bearer": 1.5, "passthrough": 1.5, "cached_key": 2.0, "cached_bearer": 2.0,
           "cached_passthrough": 2.0}
print("| path | instructions | x anchor | target | met |")
print("|---|---:|---:|---:|---|")
for name, count in counts.items():
    ratio = count / anchor
    target = targets.get(name)
    met = "" if target is None else ("yes" if ratio <= target else "no")
    print(f"| {name} | {count} | {ratio:.2f} | {'' if target is None else f'<= {target}'} | {met} |")
PY
