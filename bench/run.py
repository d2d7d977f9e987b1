"""Run the benchmarks in bench/ and rewrite their sections of bench/RESULTS.md: `python3 dev.py bench` (or
`python bench/run.py [name ...]`). Each runs in its own process, one after another. Run it on a quiet machine:
other load distorts every figure (each section records the load average it started with)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> arguments; the order puts the cheap ones first.
BENCHMARKS = {
    "startup": [],
    "fidelity": [],
    "check_runtime": [],
    "overhead": [],
    "motivation": [],
    "compare_models": ["resnet18", "resnet50", "mobilenet_v2"],
    "rules_more": [],
    "numerics_cost": [],
    "slow_layers": [],
    "stress_isolation": [],
    "under_load": [],
    "reports": [],
    "executorch_xnnpack": [],  # needs .[executorch]
}


def main(names: list[str]) -> int:
    chosen = names or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        print(f"bench/run.py: unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
        return 2
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    failed = []
    for name in chosen:
        print(f"== {name}", flush=True)
        if subprocess.call([sys.executable, str(HERE / f"{name}.py"), *BENCHMARKS[name]], cwd=ROOT, env=env) != 0:
            failed.append(name)
    if failed:
        print(f"bench/run.py: failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
