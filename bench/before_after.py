#!/usr/bin/env python3
"""Is this checkout slower than an earlier one? `qdoctor check` end to end, old and new code alternating.

    python bench/before_after.py 8f3faa2                       # seed 004 fixture, 5 runs each, writes RESULTS.md
    python bench/before_after.py 8f3faa2 --fixture fixtures/healthy_static.py --runs 3 --no-write

The old revision is checked out into a temporary git worktree; each run is a fresh process
(`python -m qdoctor check FIXTURE --format json --exit-zero`) with that tree first on PYTHONPATH, old and new
alternating so that a change in the machine's load hits both alike. Reports wall time and the sum of the phase
times qdoctor itself records (`phase_seconds`), each as median ± IQR, and whether the findings are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from check_runtime import cell
from common import ROOT, machine, table, write_section


def run_check(tree: Path, fixture: str) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(tree) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "qdoctor", "check", fixture, "--format", "json", "--exit-zero"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"before_after: {' '.join(command)} in {tree} exited {done.returncode}: {done.stderr[-500:]}")
    return wall, json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="the earlier commit to compare with (e.g. the commit before a refactor)")
    parser.add_argument("--fixture", default="fixtures/seed004_as_written.py")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    revision = subprocess.run(
        ["git", "rev-parse", "--short", args.revision], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    where = machine()
    with tempfile.TemporaryDirectory(prefix="qdoctor-before-") as folder:
        old = Path(folder) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), revision], cwd=ROOT, check=True)
        try:
            walls: dict[str, list[float]] = {"old": [], "new": []}
            phases: dict[str, list[float]] = {"old": [], "new": []}
            codes: dict[str, set[tuple[str, ...]]] = {"old": set(), "new": set()}
            for i in range(args.runs):
                for side, tree in (("old", old), ("new", ROOT)) if i % 2 == 0 else (("new", ROOT), ("old", old)):
                    wall, report = run_check(tree, args.fixture)
                    walls[side].append(wall)
                    phases[side].append(sum((report.get("phase_seconds") or {}).values()))
                    codes[side].add(tuple(sorted(f["rule"] for f in report["findings"])))
                    print(f"{side} run {i + 1}: {wall:.2f} s", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT)
    rows = [
        [f"{revision} (before)", cell(walls["old"]), cell(phases["old"]), ", ".join(map(",".join, codes["old"]))],
        [
            f"{head.strip()} (this checkout)",
            cell(walls["new"]),
            cell(phases["new"]),
            ", ".join(map(",".join, codes["new"])),
        ],
    ]
    body = (
        f"Machine: {where}\n\n"
        + table(["code", "wall s", "gathering phases s", "findings"], rows)
        + f"\n\n`qdoctor check {args.fixture}` (verified fixes on), {args.runs} runs each in fresh processes, old and "
        "new alternating; median ± IQR. Gathering phases: the sum of the report's `phase_seconds`."
    )
    print(body)
    if not args.no_write:
        write_section("before_after", f"Before and after a change: `qdoctor check {args.fixture}`", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
