"""Helpers for the flows benchmarks: machine line, table rows and sections of bench/flows_results.md."""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "flows_results.md"
HEADER = """# Modern quantization flows: measured effects

Written by bench/flows_pt2e.py and bench/flows_torchao.py; each section names its machine, date and command.
Every time is a torch.utils.benchmark measurement, taken in rounds that interleave the variants of a table: the
median of the round medians with the IQR across rounds, never a mean of wall-clock deltas. A "first call" is one
wall-clock measurement of the first run of a compiled model, which includes compilation.
"""


def machine() -> str:
    import torch

    from qdoctor.gather.environment import gather_environment

    env = gather_environment()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{env.cpu_model}, {env.cpu_count} cores, {env.machine} ({', '.join(env.cpu_isa)}), torch {torch.__version__}, "
        f"load average {load:.1f} at start, {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


def row(label: str, timing, base, first_call_s: float | None = None) -> str:
    ratio = base.median_ms / timing.median_ms if timing.median_ms else float("nan")
    relation = f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
    noisy = " (noisy)" if timing.noisy else ""
    first = f"{first_call_s:.1f}" if first_call_s is not None else "-"
    return f"| {label} | {timing.median_ms:.2f} ± {timing.iqr_ms:.2f}{noisy} | {relation} | {timing.runs} | {first} |"


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) this script's section of bench/flows_results.md (through common.replace_section)."""
    from common import replace_section

    block = f"<!-- bench:{name} -->\n## {title}\n\n{body.strip()}\n<!-- /bench:{name} -->"
    replace_section(name, block, results=RESULTS, header=HEADER)


def cpu_time_ms(run, min_run_time: float) -> float:
    """Median CPU time (ms) of one call on one thread: torch.utils.benchmark.Timer with the process CPU clock.

    On a machine shared with other jobs, wall time includes the time spent waiting for a core; the CPU time of a
    single-threaded run does not, so comparisons between variants stay meaningful under load."""
    import torch.utils.benchmark as benchmark

    run()
    timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=1, timer=time.process_time)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1000.0


def interleaved(runs: dict, rounds: int, min_run_time: float, clock: str = "wall") -> dict:
    """Time several callables in interleaved rounds, so that load from other jobs on a shared machine falls on all
    of them alike: each round times every callable with torch.utils.benchmark (clock "wall": qdoctor.gather.timing
    with the thread count in force; clock "cpu": one thread, process CPU time), and the result per callable is the
    median of its round medians with the IQR across rounds."""
    import statistics

    import torch

    from qdoctor.facts import Timing
    from qdoctor.gather.timing import time_callable

    medians: dict = {label: [] for label in runs}
    threads = 1 if clock == "cpu" else torch.get_num_threads()
    for _ in range(rounds):
        for label, run in runs.items():
            if clock == "cpu":
                medians[label].append(cpu_time_ms(run, min_run_time))
            else:
                medians[label].append(time_callable(run, min_run_time).median_ms)
    result = {}
    for label, values in medians.items():
        values.sort()
        quartiles = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
        median = statistics.median(values)
        iqr = quartiles[2] - quartiles[0]
        result[label] = Timing(
            median_ms=median,
            iqr_ms=iqr,
            runs=len(values),
            number_per_run=1,
            num_threads=threads,
            noisy=bool(median and iqr / median > 0.10),
        )
    return result


def quiet() -> None:
    """torch.export, torchao and Inductor log and warn a lot: keep the benchmark output to its table."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)


def clock_text(clock: str, rounds: int, min_run_time: float) -> tuple[str, str]:
    """(how the table was timed, the name of its time column) for a clock."""
    if clock == "cpu":
        return (
            f"CPU time of one call on one thread (torch.utils.benchmark.Timer with the process CPU clock, "
            f"blocked_autorange min_run_time {min_run_time} s), in {rounds} interleaved rounds: median of the round "
            "medians ± IQR across rounds. CPU time leaves out the waiting for a core on this shared machine",
            "CPU ms per call, 1 thread (median ± IQR)",
        )
    return (
        f"latency with the thread count in force (qdoctor.gather.timing, min_run_time {min_run_time} s), in "
        f"{rounds} interleaved rounds: median of the round medians ± IQR across rounds. The machine was shared "
        "with other jobs: compare rows of a table, not absolute figures",
        "latency ms (median ± IQR)",
    )


def parse_args(argv, **extra):
    """The options every flows benchmark takes (rounds, min run time, clock) plus its own (name=(type, default))."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: latency with the threads in force; cpu: CPU time on one thread (steadier on a shared machine)",
    )
    for name, (kind, default) in extra.items():
        parser.add_argument(f"--{name}", type=kind, default=default)
    args = parser.parse_args(argv)
    quiet()
    if args.clock == "cpu":
        import torch

        # before anything compiles: a compiled model recompiles (with the Inductor settings then in force) when the
        # thread count changes, and the CPU clock times one thread
        torch.set_num_threads(1)
    return args
