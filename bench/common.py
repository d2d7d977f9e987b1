"""Shared helpers for bench/ scripts: machine description, markdown tables, and RESULTS.md sections.

Each script owns one section of bench/RESULTS.md, delimited by `<!-- bench:NAME -->` markers, and rewrites only
that section, so scripts can be run one at a time or all together (bench/run.py).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
sys.path.insert(0, str(ROOT))

HEADER = """# qdoctor benchmark results

Written by the scripts in bench/ (`python3 dev.py bench` runs them all). Each section says the machine and date it
was measured on; times are medians with their interquartile range (IQR) over timed blocks (torch.utils.benchmark),
never means of wall-clock deltas.
"""


def machine() -> str:
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch

    from qdoctor.gather.environment import gather_environment

    env = gather_environment()
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{env.cpu_model}, {env.cpu_count} cores, {env.machine} ({', '.join(env.cpu_isa)}), "
        f"torch {torch.__version__}, Python {env.python_version}, load average {busy:.1f} at start; "
        f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + " |"

    out = [line(headers), "| " + " | ".join("-" * w for w in widths) + " |"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) this script's section of bench/RESULTS.md."""
    replace_section(name, f"<!-- bench:{name} -->\n## {title}\n\n{body.strip()}\n<!-- /bench:{name} -->")


def replace_section(name: str, block: str, results: Path = RESULTS, header: str = HEADER) -> None:
    """Put ``block`` (already wrapped in its `<!-- bench:NAME -->` markers) in place of the old section NAME of
    ``results`` (bench/RESULTS.md unless told), written atomically: an interrupted run leaves the old file whole."""
    from qdoctor.files import write_text_atomic

    text = results.read_text(encoding="utf-8") if results.exists() else header
    block = block.strip()
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    write_text_atomic(results, text)


def ms(median: float, iqr: float) -> str:
    return f"{median:.2f} ± {iqr:.2f}"


def wall_times(run: Callable[[], object], repeats: int) -> tuple[float, float, list[float]]:
    """Median and IQR (seconds) of whole-command wall times: for processes, where torch.utils.benchmark's
    in-process timer does not apply."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    times.sort()
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return statistics.median(times), q[2] - q[0], times


def qdoctor_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "qdoctor", *args]


def run_quiet(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
