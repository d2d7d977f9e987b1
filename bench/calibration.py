"""Are qdoctor's intervals calibrated? N separate checks of each fixture; does run i's interval cover run j's value?

Every ratio a check reports (the speedup over fp32, each verified fix, fix-all vs fp32) is a value with a nominal 95 %
interval meant to say where a repeated check would measure it (qdoctor.gather.rounds). This script runs
`qdoctor check` N times per fixture in separate processes, quiet, quiet with OMP_NUM_THREADS=1 (one thread drifts
less within a process: is it steadier between them?) and then under a same-priority multi-threaded torch job (bench/under_load.py's), and counts,
per ratio, the ordered pairs (i, j), i != j, whose interval i contains value j. Target: >= 90 % coverage, intervals
no wider than needed (the median width is shown).

It also estimates the between-process component the intervals need (qdoctor.gather.rounds.PROCESS_SD and its
contended variants): the spread of the values across processes (sd of their logs) beyond each run's own share of its
interval. The column "between-process sd seen" is that estimate, pooled over the ratios of a condition; when coverage
falls short, the constant for that condition in rounds.py should be raised to it.

    python bench/calibration.py                  # 4 checks per fixture quiet, 4 on one thread, 4 under load
    python bench/calibration.py --runs 6         # more pairs
    python bench/calibration.py --no-load        # quiet only
    python bench/calibration.py --tiny           # smoke run: one fixture, 2 runs, short budgets, print only
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import machine, table, write_section
from under_load import check_json, ratios, start_load

from qdoctor.gather import rounds

FIXTURES = [
    "fixtures/healthy_static.py",
    "fixtures/qnnpack_engine_on_x86.py",
    "fixtures/small_mlp_int8.py",
    "fixtures/seed004_as_written.py",  # its fix-all vs fp32 (and each fix)
]
TARGET = 0.90
ONE_THREAD = "one thread, without the load job"  # OMP_NUM_THREADS=1: is one thread steadier between processes?


def run_checks(
    fixtures: list[str], runs: int, bench_time: float | None, timeout: float, env: dict[str, str] | None = None
) -> dict[str, list[Any]]:
    """``runs`` checks of each fixture, interleaved (f1 f2 f3 f1 f2 f3 ...) so a drift of the machine falls on all."""
    documents: dict[str, list[Any]] = {f: [] for f in fixtures}
    for _ in range(runs):
        for fixture in fixtures:
            documents[fixture].append(check_json(fixture, bench_time, timeout, env))
    return documents


def coverage(intervals: list[dict[str, Any]]) -> tuple[int, int]:
    """(covered, pairs): ordered pairs i != j whose interval i contains value j."""
    covered = pairs = 0
    for i, own in enumerate(intervals):
        for j, other in enumerate(intervals):
            if i != j:
                pairs += 1
                covered += own["low"] <= other["value"] <= own["high"]
    return covered, pairs


def own_variance(interval: dict[str, Any]) -> float:
    """This run's own variance of its log value, recovered from its widened interval: the half-width on the log scale
    is z * sqrt(2 * (own^2 + between^2)) (qdoctor.gather.rounds.widened; ``process_sd`` is the between part)."""
    half = (math.log(interval["high"]) - math.log(interval["low"])) / 2
    between = float(interval.get("process_sd", 0.0))
    return max(0.0, (half / rounds.Z_95) ** 2 / 2 - between**2)


@dataclass
class Pool:
    """Coverage and the between-process variance seen, pooled over the ratios of one condition and assumed sd."""

    covered: int = 0
    pairs: int = 0
    excess: list[float] = field(default_factory=list)  # per ratio: variance of log values beyond the runs' own
    weights: list[int] = field(default_factory=list)

    def seen(self) -> float | None:
        if not self.weights:
            return None
        return math.sqrt(sum(e * w for e, w in zip(self.excess, self.weights, strict=True)) / sum(self.weights))


def shown(pool: Pool) -> list[str]:
    """coverage, verdict, sd seen: a summary row's cells."""
    if not pool.pairs:
        return ["-", "-", "-"]
    seen = pool.seen()
    return [
        f"{pool.covered}/{pool.pairs} ({pool.covered / pool.pairs:.0%})",
        "meets 90 %" if pool.covered >= TARGET * pool.pairs else "BELOW 90 %",
        f"{seen:.3f}" if seen is not None else "-",
    ]


def rows_of(documents: dict[str, list[Any]], condition: str) -> tuple[list[list[str]], dict[float, Pool]]:
    """Table rows for one condition, and per between-process sd the intervals assumed (a ratio whose sides ran on one
    thread assumes less than one on several), the pooled coverage and sd seen."""
    rows: list[list[str]] = []
    pools: dict[float, Pool] = {}
    for fixture, docs in documents.items():
        found = [ratios(d) for d in docs]
        for name in sorted({n for f in found for n in f}):
            intervals = [f[name] for f in found if name in f]
            if len(intervals) < 2:
                continue
            assumed = round(statistics.median(float(i.get("process_sd", 0.0)) for i in intervals), 2)
            pool = pools.setdefault(assumed, Pool())
            covered, pairs = coverage(intervals)
            pool.covered, pool.pairs = pool.covered + covered, pool.pairs + pairs
            logs = [math.log(i["value"]) for i in intervals]
            spread = statistics.variance(logs)
            own = statistics.fmean(own_variance(i) for i in intervals)
            pool.excess.append(max(0.0, spread - own))
            pool.weights.append(len(intervals) - 1)
            widths = [i["high"] / i["low"] - 1 for i in intervals]
            busy = sum(bool(i.get("contended")) for i in intervals)
            rows.append(
                [
                    condition,
                    Path(fixture).name,
                    name,
                    ", ".join(f"{i['value']:.2f}" for i in intervals),
                    f"{min(i['value'] for i in intervals):.2f}-{max(i['value'] for i in intervals):.2f}",
                    f"{assumed:.2f}",
                    f"+-{statistics.median(widths) / 2:.0%}",
                    f"{covered}/{pairs} ({covered / pairs:.0%})",
                    f"{busy}/{len(intervals)}",
                ]
            )
    return rows, pools


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", nargs="*", default=FIXTURES)
    parser.add_argument("--runs", type=int, default=4, help="separate checks per fixture and condition")
    parser.add_argument("--bench-time", type=float, default=None, help="--bench-time of each check (default qdoctor's)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per qdoctor command")
    parser.add_argument("--no-load", action="store_true", help="no runs under the load job")
    parser.add_argument("--no-one-thread", action="store_true", help="no quiet runs with OMP_NUM_THREADS=1")
    parser.add_argument("--tiny", action="store_true", help="smoke run: one fixture, 2 runs, short budgets, print only")
    args = parser.parse_args()
    if args.tiny:
        args.fixtures, args.runs, args.bench_time, args.no_one_thread = args.fixtures[2:3], 2, 0.1, True
    described = machine()
    started = time.perf_counter()
    conditions: list[tuple[str, dict[str, list[Any]], str]] = []
    quiet_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    conditions.append(("without the load job", run_checks(args.fixtures, args.runs, args.bench_time, args.timeout), ""))
    if not args.no_one_thread:
        one = run_checks(args.fixtures, args.runs, args.bench_time, args.timeout, {"OMP_NUM_THREADS": "1"})
        conditions.append((ONE_THREAD, one, ""))
    if not args.no_load:
        job = start_load(args.timeout * args.runs * len(args.fixtures))
        try:
            loaded = run_checks(args.fixtures, args.runs, args.bench_time, args.timeout)
            seen = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        finally:
            job.kill()
            job.wait()
        conditions.append(("with the load job", loaded, f"1-minute load average {seen:.1f} while loaded"))
    rows: list[list[str]] = []
    summary: list[list[str]] = []
    for condition, documents, _ in conditions:
        found, pools = rows_of(documents, condition)
        rows += found
        total = Pool()
        for assumed, pool in sorted(pools.items()):
            total.covered, total.pairs = total.covered + pool.covered, total.pairs + pool.pairs
            summary.append([condition, f"{assumed:.2f}", *shown(pool)])
        if len(pools) > 1:
            summary.append(
                [
                    condition,
                    "all",
                    f"{total.covered}/{total.pairs} ({total.covered / total.pairs:.0%})",
                    "meets 90 %" if total.covered >= TARGET * total.pairs else "BELOW 90 %",
                    "-",
                ]
            )
    loads = "; ".join(note for _, _, note in conditions if note)
    body = "\n\n".join(
        [
            f"Machine: {described} (1-minute load average {quiet_load:.1f} when the runs without the load job began{'; ' + loads if loads else ''}). "
            f"{args.runs} separate `qdoctor check FIXTURE --format json` per fixture and condition, interleaved across "
            "fixtures; under load a same-priority torch job with one thread per core (bench/under_load.py's) runs "
            f"throughout. {time.perf_counter() - started:.0f} s in all.",
            "Coverage: the ordered pairs (run i, run j) whose interval i contains value j, pooled per condition (target "
            f">= {TARGET:.0%} for the nominal 95 % intervals). Between-process sd seen: the spread of the log values "
            "across runs beyond each run's own share of its interval, pooled; the intervals assume "
            f"{rounds.PROCESS_SD} quiet (on any thread count), "
            f"{rounds.PROCESS_SD_CONTENDED} contended on one thread, "
            f"{rounds.PROCESS_SD_CONTENDED_THREADS} contended on several, times the square root of the load average per core when above 1"
            " (qdoctor.gather.rounds.process_sd); the sd used is in each ratio's JSON (process_sd).",
            table(["condition", "sd assumed", "coverage", "", "between-process sd seen"], summary),
            table(
                [
                    "condition",
                    "fixture",
                    "ratio",
                    "values",
                    "range",
                    "sd assumed",
                    "median half-width",
                    "coverage",
                    "contended",
                ],
                rows,
            ),
        ]
    )
    if not args.tiny:
        write_section("calibration", "Calibration: do other runs' values fall in each run's interval? (issue 26)", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
