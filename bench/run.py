"""Run every benchmark in bench/ and rewrite bench/RESULTS.md: `python3 dev.py bench` (or `python bench/run.py
[name ...]`). Run it on a quiet machine: other load distorts every figure."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

ORDER = ["startup", "fidelity", "overhead", "motivation", "check_runtime"]


def main(names: list[str]) -> int:
    available = [n for n in ORDER if (HERE / f"{n}.py").exists()]
    chosen = names or available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        print(f"bench/run.py: unknown benchmark(s) {unknown}; choose from {available}")
        return 2
    for name in chosen:
        print(f"== {name}", flush=True)
        print(importlib.import_module(name).main(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
