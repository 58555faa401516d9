#!/usr/bin/env python3
"""Checks that each workspace member's declared `rust-version` is what its resolved dependencies need.

Reads `cargo metadata` for Linux x86_64 with every feature on, walks each member's normal (and build)
dependencies through the lockfile's resolution, and takes the highest `rust-version` any of them declares. A
member whose `rust-version` is lower than that would promise a toolchain the lockfile cannot build with; one
that is higher would promise less than it could. Both fail. The need of the test and bench builds (with the
dev-dependencies) is printed, not checked: it is a contributor's requirement, not a user's.

    scripts/check-msrv.py
"""
import json
import subprocess
import sys


def version(text):
    parts = (text or "0").split(".")
    parts += ["0"] * (3 - len(parts))
    return tuple(int(p) for p in parts[:3])


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked",
             "--filter-platform", "x86_64-unknown-linux-gnu"],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}

    def closure(root, with_dev):
        seen, stack = set(), [root]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            allowed = (None, "build", "dev") if (current == root and with_dev) else (None, "build")
            for dep in nodes[current]["deps"]:
                if any(kind["kind"] in allowed for kind in dep["dep_kinds"]):
                    stack.append(dep["pkg"])
        seen.discard(root)
        return seen

    def need(ids):
        return max((version(packages[i].get("rust_version")), packages[i]["name"], packages[i]["version"])
                   for i in ids)

    failed = False
    for member in metadata["workspace_members"]:
        package = packages[member]
        if package.get("publish") == [] and package["name"] != "mcp-gateway":
            continue  # test-only crates promise nothing
        declared = package.get("rust_version")
        (needed, by, at) = need(closure(member, False))
        (dev_needed, dev_by, dev_at) = need(closure(member, True))
        needed_text = ".".join(map(str, needed[:2] if needed[2] == 0 else needed))
        print(f"{package['name']}: rust-version {declared}; its dependencies need {needed_text} "
              f"({by} {at}); its tests and benches need {'.'.join(map(str, dev_needed))} ({dev_by} {dev_at})")
        if declared is None or version(declared) != needed:
            print(f"  error: {package['name']} declares rust-version {declared}, but its resolved dependencies "
                  f"need {needed_text}", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
