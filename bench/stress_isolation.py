#!/usr/bin/env python3
"""Stress qdoctor's worker processes: N checks of the shipped fixtures with -j J, and nothing may be lost.

    python bench/stress_isolation.py                  # 20 checks of fixtures/*.py, -j 2, timings on (1 s per model)
    python bench/stress_isolation.py --count 40 -j 4 --no-bench

Runs the real CLI (`python -m qdoctor check ... -f json`) on the fixtures repeated to --count targets, then checks
that every target has its report, in order, with a worker status, and prints the wall time, the CPU time of all
processes, and how long each check took. Exit 0 when nothing was lost. The bounded variant (20 tiny scripts with
--no-bench) runs in tests/test_isolation.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20, help="number of targets (fixtures repeated)")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--no-bench", action="store_true", help="skip timing and profiling in the checks")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    fixtures = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "fixtures").glob("*.py"))
    targets = list(itertools.islice(itertools.cycle(fixtures), args.count))
    command = [
        sys.executable,
        "-m",
        "qdoctor",
        "check",
        *targets,
        "-j",
        str(args.jobs),
        "-f",
        "json",
        "--timeout",
        str(args.timeout),
        "--exit-zero",
    ]
    if args.no_bench:
        command += ["--no-bench", "--no-profile"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)

    document = json.loads(result.stdout)
    specs = [r["target"]["spec"] for r in document["reports"]]
    lost = len(targets) - len(specs)
    statuses: dict[str, int] = {}
    for report in document["reports"]:
        status = report["worker"]["status"]
        statuses[status] = statuses.get(status, 0) + 1
    seconds = sorted(row["seconds"] for row in document["summary"]["targets"])
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end; python {platform.python_version()}"
    )
    print(f"command: {' '.join(command[1:])}")
    print(f"targets {len(targets)}, reports {len(specs)}, lost {lost}, in order: {specs == targets}")
    print(f"statuses: {statuses}; exit code {result.returncode} (--exit-zero: 2 only if a check did not finish)")
    print(f"wall {wall:.1f} s; CPU of all processes {usage.ru_utime + usage.ru_stime:.1f} s")
    print(f"per check: median {seconds[len(seconds) // 2]:.1f} s, min {seconds[0]:.1f} s, max {seconds[-1]:.1f} s")
    return 0 if lost == 0 and specs == targets and set(statuses) == {"checked"} else 1


if __name__ == "__main__":
    sys.exit(main())
