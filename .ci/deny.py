#!/usr/bin/env python3
"""The offline part of deny.toml: licenses, duplicate versions, wildcards and sources.

cargo-deny itself needs installing (minutes of compiling in CI) and its advisory database is a
git clone from GitHub, which CI cannot reach; this applies the same [licenses], [bans] and
[sources] rules from deny.toml to `cargo metadata` for deny.toml's targets. Exit status 1 with
one line per problem; warnings for skip entries that match nothing.
"""
import collections
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"


def metadata(target):
    out = subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1", "--filter-platform", target],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def tokens(expr):
    # Old Cargo manifests write "MIT/Apache-2.0" for "MIT OR Apache-2.0".
    expr = re.sub(r"\s*/\s*", " OR ", expr)
    return re.findall(r"\(|\)|[^\s()]+", expr)


def satisfied(expr, allowed):
    """Whether the SPDX expression `expr` can be met with `allowed` licenses."""
    toks = tokens(expr)
    pos = 0

    def term():
        nonlocal pos
        if toks[pos] == "(":
            pos += 1
            value = either()
            pos += 1  # ")"
            return value
        name = toks[pos]
        pos += 1
        if pos < len(toks) and toks[pos] == "WITH":
            name = f"{name} WITH {toks[pos + 1]}"
            pos += 2
        return name in allowed

    def chain(operand, word, combine):
        """`operand (word operand)*`, folded left to right with `combine`."""
        nonlocal pos
        value = operand()
        while pos < len(toks) and toks[pos] == word:
            pos += 1
            value = combine(operand(), value)
        return value

    def both():
        return chain(term, "AND", lambda a, b: a and b)

    def either():
        return chain(both, "OR", lambda a, b: a or b)

    return either()


def main():
    policy = tomllib.loads((ROOT / "deny.toml").read_text())
    allowed = set(policy["licenses"]["allow"])
    skip = {entry["crate"] for entry in policy["bans"].get("skip", [])}
    problems, used_skips = [], set()
    packages = {}
    for target in policy["graph"]["targets"]:
        for p in metadata(target)["packages"]:
            packages[p["id"]] = p
    versions = collections.defaultdict(set)
    for p in packages.values():
        name = f"{p['name']}@{p['version']}"
        if p["source"] is None:  # a crate of this workspace
            for dep in p["dependencies"]:
                if dep["req"] == "*":
                    problems.append(f"wildcards: {p['name']} depends on {dep['name']} = \"*\"")
            continue
        if p["source"] != CRATES_IO:
            problems.append(f"sources: {name} comes from {p['source']}, not crates.io")
        if not p["license"]:
            problems.append(f"licenses: {name} declares no SPDX license")
        elif not satisfied(p["license"], allowed):
            problems.append(f"licenses: {name} is {p['license']}, not in deny.toml's allow list")
        if name in skip:
            used_skips.add(name)
        else:
            versions[p["name"]].add(p["version"])
    for crate, vs in sorted(versions.items()):
        if len(vs) > 1:
            problems.append(
                f"bans: {crate} in {len(vs)} versions ({', '.join(sorted(vs))}); "
                "align the dependencies or add a skip entry with its reason"
            )
    for stale in sorted(skip - used_skips):
        print(f"warning: deny.toml skips {stale}, which is not in the tree any more", file=sys.stderr)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    ours = sum(p["source"] is None for p in packages.values())
    print(f"deny.toml: {len(packages) - ours} crates pass licenses, bans and sources")


if __name__ == "__main__":
    main()
