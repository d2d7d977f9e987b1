#!/usr/bin/env python3
"""Benchmark `qdoctor compare` on torchvision models (random weights): the recipes' latency, size and SQNR, and
how long the compare itself takes. Prints a table per model and rewrites the compare section of bench/RESULTS.md.

    python bench/compare_models.py                      # resnet18, default recipes (fp32 + 6 int8 recipes)
    python bench/compare_models.py resnet18 resnet50 mobilenet_v2
    python bench/compare_models.py resnet18 --recipes all   # adds PT2E + torch.compile (slow)

Run it on a quiet machine: the wall time of the compare and every latency depend on what else runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "RESULTS.md"
# The section markers every bench/ script uses (bench/common.py write_section on main): one section per script.
BEGIN, END = "<!-- bench:compare_models -->", "<!-- /bench:compare_models -->"
MODELS = ("resnet18", "resnet50", "mobilenet_v2")


def _load() -> str:
    try:
        return "load average {:.1f} / {:.1f} / {:.1f} (1/5/15 min)".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def _table(result) -> list[str]:
    from qdoctor.compare.reporters import cells
    from qdoctor.compare.reporters.markdown_report import cell

    shown = ["recipe", "latency", "speedup", "size", "smaller", "SQNR", "build", "verdict"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "|".join("---" if n == "recipe" else "---:" for n in shown) + "|"]
    for row in cells.rows(result):
        values = [cell(row.cells[n]) for n in shown]
        if row.candidate.latency is not None:
            values[1] += f" ({row.candidate.latency.runs} runs)"
        lines.append("| " + " | ".join(f"**{v}**" if row.recommended else v for v in values) + " |")
    for recipe, why in cells.problems(result):
        lines.append(f"\n- `{recipe}`: {why}")
    return lines


def run(models: list[str], recipes: str | None, bench_time: float) -> str:
    from qdoctor.compare import CompareOptions, compare
    from qdoctor.compare.reporters import CompareFormat, cells, render

    started = dt.datetime.now().astimezone()
    load_before = _load()
    sections = []
    machine = ""
    for name in models:
        fixture = ROOT / "fixtures" / f"compare_{name}.py"
        if not fixture.exists():
            sys.exit(f"no fixture {fixture}")
        print(f"== {name}", file=sys.stderr, flush=True)
        wall = time.perf_counter()
        result = compare(
            str(fixture),
            CompareOptions(recipes=recipes, bench_time=bench_time),
            progress=lambda msg: print(f"   {msg}", file=sys.stderr, flush=True),
        )
        wall = time.perf_counter() - wall
        sys.stdout.write(render(result, CompareFormat.terminal))
        machine = cells.machine_text(result)
        measured = sum(1 for c in result.candidates if c.recipe != "fp32" and c.ok)
        selected = len(result.candidates) - 1
        sections += [
            f"### {name} (`fixtures/compare_{name}.py`, input {cells.inputs_text(result)})",
            "",
            f"`qdoctor compare` took **{wall:.0f} s** wall clock for fp32 + {selected} recipes "
            f"({measured} measured; --bench-time {bench_time:g}). Recommended: **{result.recommendation.recipe}**: "
            f"{result.recommendation.reason}.",
            "",
            *_table(result),
            "",
        ]
    command = "python bench/compare_models.py " + " ".join(models) + (f" --recipes {recipes}" if recipes else "")
    header = [
        BEGIN,
        "## qdoctor compare on torchvision models (random weights)",
        "",
        f"- date: {started:%Y-%m-%d %H:%M %Z}; command: `{command}`",
        f"- machine: {machine}",
        f"- {load_before} at the start, {_load()} at the end. A load above the core count means other processes "
        "shared the CPU: latencies and wall times are then noisy and pessimistic.",
        "- latency: torch.utils.benchmark median ± IQR of one forward (batch 1, 3x224x224) under the recipe's engine; "
        "size: torch.save of the state_dict; SQNR: outputs vs fp32 on held-out random batches; build: one wall-clock "
        "run of fuse/prepare/calibrate (8 batches)/convert.",
        "",
    ]
    return "\n".join(header + sections + [END]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["resnet18"], choices=MODELS)
    parser.add_argument("--recipes", default=None, help="as for `qdoctor compare --recipes` (default: the default set)")
    parser.add_argument("--bench-time", type=float, default=1.0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    section = run(args.models or ["resnet18"], args.recipes, args.bench_time)
    print(section)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from common import replace_section

        replace_section("compare_models", section)
        print(f"wrote the compare section of {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
