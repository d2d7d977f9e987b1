"""End-to-end wall time of `qdoctor check` per fixture, and how much of it is spent running the model.

overhead ratio = wall time of the whole command / time inside measured model runs (trace, profiles, benchmarks and
numerics, from the report's phase_seconds). Target <= 1.5. The verified-fixes stage does not report a phase time,
so its counterfactual runs count as overhead here too. Loading the user's script is counted
as overhead here even when the script runs its own benchmark loop (seed 004 does), so the ratio is pessimistic.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common import ROOT, machine, qdoctor_cmd, run_quiet, table, write_section

MODEL_PHASES = ("trace", "profile", "float_profile", "benchmark", "numerics", "verify", "fix_all")


def main(argv: list[str] | None = None) -> str:
    argv = argv if argv is not None else sys.argv[1:]
    fixtures = [Path(a) for a in argv] or sorted((ROOT / "fixtures").glob("*.py"))
    rows = []
    for path in fixtures:
        start = time.perf_counter()
        result = run_quiet(qdoctor_cmd("check", str(path), "--format", "json"))
        wall = time.perf_counter() - start
        try:
            doc = json.loads(result.stdout)
        except json.JSONDecodeError:
            rows.append(
                [path.name, f"{wall:.1f}", "-", "-", f"exit {result.returncode}: {result.stderr.strip()[-80:]}"]
            )
            continue
        if isinstance(doc, dict) and "reports" in doc:
            doc = doc["reports"][0]
        phases = doc.get("phase_seconds") or {}
        model_time = sum(v for k, v in phases.items() if k in MODEL_PHASES)
        codes = ",".join(sorted({f["rule"] for f in doc.get("findings", [])})) or "none"
        rows.append(
            [path.name, f"{wall:.1f}", f"{model_time:.1f}", f"{wall / model_time:.2f}" if model_time else "-", codes]
        )
    body = (
        f"Machine: {machine()}\n\n"
        + table(["fixture", "wall s", "model runs s", "overhead ratio", "findings"], rows)
        + (
            "\n\nOne run each of `python -m qdoctor check FIXTURE --format json` (default timing settings). Model runs ="
            " trace, profiles, benchmarks and numerics; process start-up, the user's script and the verified-fixes stage"
            " count as overhead."
        )
    )
    write_section("overhead", "qdoctor check: wall time and overhead per fixture", body)
    return body


if __name__ == "__main__":
    print(main())
