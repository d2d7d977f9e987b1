#!/usr/bin/env python3
"""What verified fixes cost and give: `qdoctor check` end to end on the seed 004 fixture, with and without them.

    python bench/check_runtime.py                 # 3 runs per variant, rewrites its section of bench/RESULTS.md
    python bench/check_runtime.py --runs 5 --no-write

1. Wall and CPU time of the whole command (`python -m qdoctor check FIXTURE --format json`), with verification
   (the default) and with `--no-verify`, alternating, each run in a fresh process: the difference is what
   verification costs (target: the whole check in about 10 s on 2 cores).
2. The "fix all" each verified run reports: its time, the fp32 time, the speedup and SQNR vs fp32.
3. In one process: the verification stage alone on the findings seed 004 must have (QD001, QD002, QD004; any the
   rules in this checkout do not raise are added by hand and listed), its wall time, and the saved fix-all model
   (`--save-fixed`) timed again against fp32, alternating, at 1 and 2 intra-op threads.

Every figure is a median with its IQR over the runs; the section records the machine, date and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

from common import ROOT, machine, qdoctor_cmd, table, write_section

SEED004_CODES = ("QD001", "QD002", "QD004")
WITH, WITHOUT = "`qdoctor check` (verified fixes, the default)", "`qdoctor check --no-verify`"


def spread(values: list[float]) -> tuple[float, float]:
    """Median and interquartile range (0 for fewer than 2 values)."""
    if len(values) < 2:
        return (values[0] if values else float("nan")), 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q[2] - q[0]


def cell(values: list[float], digits: int = 2) -> str:
    median, iqr = spread(values)
    return f"{median:.{digits}f} ± {iqr:.{digits}f}"


def run_cli(fixture: str, extra: list[str]) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds (user + system, all threads) and the JSON report of one `qdoctor check`."""
    command = qdoctor_cmd("check", fixture, "--format", "json", "--exit-zero", *extra)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"check_runtime: `{' '.join(command)}` exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall, cpu, json.loads(done.stdout)


def saved_model_times(path: Path, loaded, engine: str) -> dict[int, list[tuple[float, float]]]:
    """(fp32 ms, fix-all ms) pairs for the saved TorchScript fix-all model, alternating, at 1 and 2 threads.

    One thread is the load-robust figure on a shared machine: two threads that wait for each other at every op turn
    another process's burst into a many-fold slowdown of small int8 ops.
    """
    import torch

    from qdoctor.gather import timing
    from qdoctor.introspect.state import quantized_engine

    pairs: dict[int, list[tuple[float, float]]] = {}
    with quantized_engine(engine), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        fixed = torch.jit.load(str(path))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            pairs[threads] = [
                (
                    timing.time_model(loaded.float_baseline, loaded.inputs, 0.5).median_ms,
                    timing.time_model(fixed, loaded.inputs, 0.5, copy_model=False).median_ms,
                )
                for _ in range(3)
            ]
    return pairs


def stage_alone(fixture: str, runs: int) -> dict:
    """The prescriptions stage in-process on the findings seed 004 must have; the last fix-all model saved."""
    from qdoctor.diagnose.findings import Finding, Location, Severity
    from qdoctor.diagnose.registry import run_rules
    from qdoctor.gather import GatherOptions, gather_facts
    from qdoctor.introspect.state import preserved_torch_state
    from qdoctor.load.target import load_target
    from qdoctor.prescribe.verify import PrescribeOptions, prescribe

    walls, results, added = [], [], []
    with tempfile.TemporaryDirectory() as folder, preserved_torch_state():
        saved = Path(folder) / "fixed.pt"
        loaded = load_target(str(ROOT / fixture))
        facts = gather_facts(loaded, GatherOptions(bench=True, bench_time=1.0, profile=False))
        for _ in range(runs):
            findings, _ = run_rules(facts)
            present = {f.rule for f in findings}
            added = [c for c in SEED004_CODES if c not in present]
            findings += [Finding(c, "added-by-bench", Severity.WARNING, "", Location()) for c in added]
            start = time.perf_counter()
            prescription = prescribe(loaded, facts, findings, PrescribeOptions(save_fixed=str(saved)))
            walls.append(time.perf_counter() - start)
            assert prescription is not None and prescription.fix_all is not None
            results.append(prescription.fix_all.to_dict())  # the JSON report's fix_all
        pairs = saved_model_times(saved, loaded, results[-1]["engine"])
    return {"walls": walls, "fix_all": results, "added": added, "pairs": pairs}


def fix_all_row(label: str, fix_alls: list[dict]) -> list[str]:
    def figures(key: str) -> list[float]:
        return [float(f[key]) for f in fix_alls if isinstance(f.get(key), (int, float))]

    keys = ("after_ms", "float_ms", "speedup_vs_float", "after_sqnr_db")
    return [label, *(cell(figures(k)) if figures(k) else "-" for k in keys)]


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fixture", default="fixtures/seed004_as_written.py")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    where = machine()
    walls: dict[str, list[float]] = {WITH: [], WITHOUT: []}
    cpus: dict[str, list[float]] = {WITH: [], WITHOUT: []}
    docs = []
    for _ in range(args.runs):  # alternate the variants so that load changes hit both alike
        for name, extra in ((WITH, []), (WITHOUT, ["--no-verify"])):
            wall, cpu, doc = run_cli(args.fixture, extra)
            walls[name].append(wall)
            cpus[name].append(cpu)
            if not extra:
                docs.append(doc)
    stage = stage_alone(args.fixture, args.runs)

    rows = [[name, len(walls[name]), cell(walls[name], 1), cell(cpus[name], 1)] for name in walls]
    body = [
        f"Machine: {where}. Fixture `{args.fixture}`, `python bench/check_runtime.py --runs {args.runs}`.",
        "",
        table(["command", "runs", "wall s (median ± IQR)", "CPU s, user+sys (median ± IQR)"], rows),
        "",
        f"Verification adds {cell([a - b for a, b in zip(walls[WITH], walls[WITHOUT], strict=False)], 1)} s wall and "
        f"{cell([a - b for a, b in zip(cpus[WITH], cpus[WITHOUT], strict=False)], 1)} CPU s per check (paired run by run).",
    ]
    fixes = sorted({c for d in docs for c in d.get("fix_all", {}).get("fixes", [])})
    added = ", ".join(stage["added"]) or "none"
    body += [
        "",
        f"Fix all as the CLI reports it (fixes: {', '.join(fixes) or 'none'}), last run: "
        f'"{docs[-1].get("fix_all", {}).get("headline")}"',
        "",
        table(
            ["fix all (median ± IQR)", "after ms", "fp32 ms", "speedup vs fp32", "SQNR dB vs fp32"],
            [
                fix_all_row("CLI runs", [d["fix_all"] for d in docs if "fix_all" in d]),
                fix_all_row(f"stage alone, {'/'.join(SEED004_CODES)} (added by hand: {added})", stage["fix_all"]),
            ],
        ),
        "",
        f"The stage alone (verifying {', '.join(SEED004_CODES)} and fix all, then saving it) takes "
        f"{cell(stage['walls'], 1)} s wall.",
        "",
        "The saved fix-all model (`--save-fixed`, TorchScript) timed again against fp32, alternating, 3 rounds:",
        "",
        table(
            ["intra-op threads", "fp32 ms", "fix all ms", "speedup vs fp32"],
            [
                [
                    threads,
                    cell([p[0] for p in pairs], 1),
                    cell([p[1] for p in pairs]),
                    cell([p[0] / p[1] for p in pairs], 1),
                ]
                for threads, pairs in stage["pairs"].items()
            ],
        ),
    ]
    text = "\n".join(body)
    if not args.no_write:
        write_section("check_runtime", "`qdoctor check` on seed 004 with verified fixes: cost and effect", text)
    return text


if __name__ == "__main__":
    print(main())
