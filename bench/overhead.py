"""End-to-end wall time of `qdoctor check` per fixture, and how much of it is spent running the model.

overhead ratio = wall time of the whole command / (time inside measured model runs + the script's own time), where
the timed runs are the report's phase_seconds["inside_timed_runs"] (the timed rounds of the benchmark and of the
verified fixes) and the script's own time is the wall time of `python FIXTURE` (interpreter, torch import and whatever
the script runs: seed 004 runs its own timing loop), what running the script costs anyway. Target <= 1.5 (issue 26),
and `qdoctor check fixtures/seed004_as_written.py` <= 8 s on a quiet machine. The profiles, the trace, the numerics,
building the counterfactuals and process start-up are overhead. The phase columns are the report's own (load,
gather, verify).

    python bench/overhead.py                 # the default fixtures below, writes its section of RESULTS.md
    python bench/overhead.py fixtures/x.py   # others
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common import ROOT, machine, qdoctor_cmd, run_quiet, table, write_section

DEFAULT_FIXTURES = (
    "healthy_static.py",
    "prepared_not_converted.py",
    "qnnpack_engine_on_x86.py",
    "seed004_as_written.py",
    "tv_resnet18_unfused.py",
    "depthwise_conv1d_int8.py",
    "calibration_corrupted_row.py",
)


def main(argv: list[str] | None = None) -> str:
    argv = argv if argv is not None else sys.argv[1:]
    fixtures = [Path(a) for a in argv] or [ROOT / "fixtures" / name for name in DEFAULT_FIXTURES]
    rows = []
    for path in fixtures:
        start = time.perf_counter()
        run_quiet([sys.executable, str(path)])
        script = time.perf_counter() - start
        start = time.perf_counter()
        result = run_quiet(qdoctor_cmd("check", str(path), "--format", "json"))
        wall = time.perf_counter() - start
        try:
            doc = json.loads(result.stdout)
        except json.JSONDecodeError:
            rows.append(
                [
                    path.name,
                    f"{wall:.1f}",
                    "-",
                    "-",
                    "-",
                    "-",
                    f"{script:.1f}",
                    "-",
                    f"exit {result.returncode}: {result.stderr.strip()[-80:]}",
                ]
            )
            continue
        if isinstance(doc, dict) and "reports" in doc:
            doc = doc["reports"][0]
        phases = doc.get("phase_seconds") or {}
        model_time = phases.get("inside_timed_runs") or 0.0
        codes = ",".join(sorted({f["rule"] for f in doc.get("findings", [])})) or "none"
        rows.append(
            [
                path.name,
                f"{wall:.1f}",
                f"{phases.get('phase_load', 0.0):.1f}",
                f"{phases.get('phase_gather', 0.0):.1f}",
                f"{phases.get('phase_verify', 0.0):.1f}",
                f"{model_time:.1f}",
                f"{script:.1f}",
                f"{wall / (model_time + script):.2f}",
                codes,
            ]
        )
    body = (
        f"Machine: {machine()}\n\n"
        + table(
            [
                "fixture",
                "wall s",
                "load s",
                "gather s",
                "verify s",
                "timed runs s",
                "script s",
                "wall / (timed + script)",
                "findings",
            ],
            rows,
        )
        + (
            "\n\nOne run each of `python FIXTURE` (script s: what running the script costs anyway) and of"
            " `python -m qdoctor check FIXTURE --format json` (default timing settings). Timed runs ="
            " phase_seconds.inside_timed_runs (benchmark and verification rounds). Targets (issue 26): wall / (timed +"
            " script) <= 1.5 per fixture, seed004_as_written.py <= 8 s wall, on a quiet machine."
        )
    )
    write_section("overhead", "qdoctor check: wall time and overhead per fixture", body)
    return body


if __name__ == "__main__":
    print(main())
