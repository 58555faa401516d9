#!/usr/bin/env python3
"""Prints the criterion results of `cargo bench --bench layer` as a Markdown table: median ns per request and
the ratio to the tower-http anchor measured in the same run."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion/per_request")
rows = {}
for estimates in sorted(root.glob("*/new/estimates.json")):
    meta = json.loads((estimates.parent / "benchmark.json").read_text())
    mode, name = meta["function_id"].split("/", 1)
    rows.setdefault(name, {})[mode] = json.loads(estimates.read_text())["median"]["point_estimate"]

if "tower_http_anchor" not in rows:
    sys.exit(f"no anchor under {root}: run `cargo bench --bench layer` first")
anchor = rows["tower_http_anchor"]
print("| service | oneshot ns | × anchor | ready ns | × anchor |")
print("|---|---:|---:|---:|---:|")
for name, modes in rows.items():
    cells = []
    for mode in ("oneshot", "ready"):
        ns = modes.get(mode)
        cells += [f"{ns:.0f}", f"{ns / anchor[mode]:.2f}"] if ns else ["—", "—"]
    print(f"| {name} | " + " | ".join(cells) + " |")
