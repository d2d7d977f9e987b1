#!/usr/bin/env python3
"""What verified fixes cost and give: `qdoctor check` end to end on the seed 004 fixture, with and without them.

    python bench/check_runtime.py                 # 3 runs per variant, rewrites its section of bench/RESULTS.md
    python bench/check_runtime.py --runs 5 --no-write

1. Wall time of the whole command (`python -m qdoctor check FIXTURE --format json`), with verification (the
   default) and with `--no-verify`, each run in a fresh process; the difference is what verification costs.
2. The "fix all" each verified run reports: its time, the fp32 time, the speedup and SQNR vs fp32.
3. In one process: the verification stage alone on the findings seed 004 must have (QD001, QD002, QD004; any the
   rules in this checkout do not raise are added by hand and listed), its wall time and its "fix all".

Every figure is a median with its spread over the runs. The machine, date and load average are written with them:
on a shared machine the load changes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN = "<!-- BEGIN bench/check_runtime.py -->"
END = "<!-- END bench/check_runtime.py -->"
SEED004_CODES = ("QD001", "QD002", "QD004")


def spread(values: list[float]) -> tuple[float, float]:
    """Median and interquartile range (0 for fewer than 2 values)."""
    if len(values) < 2:
        return (values[0] if values else float("nan")), 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q[2] - q[0]


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def run_cli(fixture: str, extra: list[str]) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds (user + system, all threads) and the JSON report of one `qdoctor check`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "qdoctor", "check", fixture, "--format", "json", "--exit-zero", *extra]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"check_runtime: `{' '.join(command)}` exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall, cpu, json.loads(done.stdout)


def stage_alone(fixture: str, runs: int) -> dict:
    """The prescriptions stage in-process on the findings seed 004 must have."""
    sys.path.insert(0, str(ROOT))
    from qdoctor.gather import GatherOptions, gather_facts, preserved_torch_state
    from qdoctor.loader import load_target
    from qdoctor.prescribe import PrescribeOptions, prescribe
    from qdoctor.registry import run_rules
    from qdoctor.report import Finding, Location, Severity

    walls, results, added = [], [], []
    folder = tempfile.TemporaryDirectory()
    saved = Path(folder.name) / "fixed.pt"
    with folder, preserved_torch_state():
        loaded = load_target(str(ROOT / fixture))
        facts = gather_facts(loaded, GatherOptions(bench=True, bench_time=1.0, profile=False))
        for _ in range(runs):
            findings, _ = run_rules(facts)
            present = {f.rule for f in findings}
            added = [c for c in SEED004_CODES if c not in present]
            findings += [Finding(c, "added-by-bench", Severity.WARNING, "", Location()) for c in added]
            start = time.perf_counter()
            extras = prescribe(loaded, facts, findings, PrescribeOptions(save_fixed=str(saved)))
            walls.append(time.perf_counter() - start)
            results.append(extras["fix_all"])
        ratios = saved_model_ratios(saved, loaded, results[-1]["engine"])
    return {"walls": walls, "fix_all": results, "added": added, "ratios": ratios}


def saved_model_ratios(path: Path, loaded, engine: str) -> dict[int, list[tuple[float, float]]]:  # type: ignore[no-untyped-def]
    """The saved fix-all model (--save-fixed) timed again against fp32, alternating, at 1 and 2 intra-op threads.

    One thread is the load-robust figure on a shared machine: two threads that wait for each other at every op turn
    another process's burst into a many-fold slowdown of small int8 ops.
    """
    import torch

    from qdoctor.gather import timing
    from qdoctor.quantize import quantized_engine

    figures: dict[int, list[tuple[float, float]]] = {}
    float_model = loaded.float_baseline
    with quantized_engine(engine), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        fixed = torch.jit.load(str(path))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            figures[threads] = []
            for _ in range(3):
                fp32 = timing.time_model(float_model, loaded.inputs, 0.5).median_ms
                int8 = timing.time_model(fixed, loaded.inputs, 0.5, copy_model=False).median_ms
                figures[threads].append((fp32, int8))
    return figures


def fix_all_rows(fix_alls: list[dict]) -> dict[str, tuple[float, float]]:
    def figures(key: str) -> list[float]:
        return [float(f[key]) for f in fix_alls if isinstance(f.get(key), (int, float))]

    return {k: spread(figures(k)) for k in ("after_ms", "float_ms", "speedup_vs_float", "after_sqnr_db")}


def environment() -> str:
    import torch

    from qdoctor.gather.environment import gather_environment

    env = gather_environment()
    return (
        f"{env.cpu_model}, {env.cpu_count} cores, {env.machine} {'/'.join(env.cpu_isa)}; torch {torch.__version__}, "
        f"Python {platform.python_version()}, {env.num_threads} threads"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fixture", default="fixtures/seed004_as_written.py")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    load_before = load_average()
    walls: dict[str, list[float]] = {"verified fixes (default)": [], "--no-verify": []}
    cpus: dict[str, list[float]] = {name: [] for name in walls}
    docs = []
    for _ in range(args.runs):  # alternate the variants so that load changes hit both alike
        for name, extra in (("verified fixes (default)", []), ("--no-verify", ["--no-verify"])):
            wall, cpu, doc = run_cli(args.fixture, extra)
            walls[name].append(wall)
            cpus[name].append(cpu)
            if not extra:
                docs.append(doc)
    stage = stage_alone(args.fixture, args.runs)
    load_after = load_average()

    lines = [
        BEGIN,
        "## check_runtime: `qdoctor check` on seed 004 with verified fixes",
        "",
        f"`python bench/check_runtime.py --runs {args.runs}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"fixture `{args.fixture}`.",
        f"Machine: {environment()}. Load average (1/5/15 min) {load_before} before, {load_after} after "
        "(a shared machine: every figure moves with the load).",
        "",
        "| command | runs | median wall s | IQR s | min s | median CPU s (user+sys) | IQR s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, values in walls.items():
        median, iqr = spread(values)
        cpu, cpu_iqr = spread(cpus[name])
        lines.append(
            f"| `qdoctor check` {name} | {len(values)} | {median:.1f} | {iqr:.1f} | {min(values):.1f} | {cpu:.1f} | "
            f"{cpu_iqr:.1f} |"
        )
    cost, cost_iqr = spread([a - b for a, b in zip(walls["verified fixes (default)"], walls["--no-verify"])])
    cpu_cost, cpu_cost_iqr = spread([a - b for a, b in zip(cpus["verified fixes (default)"], cpus["--no-verify"])])
    lines.append(
        f"\nVerification adds {cost:.1f} s wall (IQR {cost_iqr:.1f} s) and {cpu_cost:.1f} CPU s "
        f"(IQR {cpu_cost_iqr:.1f} s) per check, paired run by run."
    )

    headlines = [d.get("fix_all", {}).get("headline") for d in docs]
    fixes = sorted({c for d in docs for c in d.get("fix_all", {}).get("fixes", [])})
    lines += ["", f"Fix all as the CLI reports it (fixes: {', '.join(fixes) or 'none'}): \"{headlines[-1]}\"", ""]
    stage_rows = fix_all_rows(stage["fix_all"])
    cli_rows = fix_all_rows([d["fix_all"] for d in docs if "fix_all" in d])
    added = ", ".join(stage["added"]) or "none"
    stage_wall, stage_iqr = spread(stage["walls"])
    lines += [
        "| fix all | after ms | fp32 ms | speedup vs fp32 | SQNR dB vs fp32 |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, rows in (("CLI runs", cli_rows), (f"stage alone ({', '.join(SEED004_CODES)}; added by hand: {added})", stage_rows)):
        cells = [f"{m:.2f} ± {i:.2f}" for m, i in rows.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"The stage alone takes {stage_wall:.1f} s (IQR {stage_iqr:.1f} s) for {', '.join(SEED004_CODES)} and fix all "
        "(values: median ± IQR over the runs).",
        "",
        "The saved fix-all model (`--save-fixed`, TorchScript) timed again against fp32, alternating, 3 rounds:",
        "",
        "| intra-op threads | fp32 ms | fix all ms | speedup vs fp32 |",
        "|---:|---:|---:|---:|",
    ]
    for threads, pairs in stage["ratios"].items():
        fp32, fp32_iqr = spread([p[0] for p in pairs])
        int8, int8_iqr = spread([p[1] for p in pairs])
        ratio, ratio_iqr = spread([p[0] / p[1] for p in pairs])
        lines.append(
            f"| {threads} | {fp32:.1f} ± {fp32_iqr:.1f} | {int8:.2f} ± {int8_iqr:.2f} | {ratio:.1f} ± {ratio_iqr:.1f} |"
        )
    lines.append(END)
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# qdoctor benchmark results\n"
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + section + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        RESULTS.write_text(text, encoding="utf-8")
        print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
