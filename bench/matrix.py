"""The whole fault-injection matrix (tests/matrix/: models x faults x script styles), checked cell by cell, with a
table of passed / failed cells per fault x style in bench/RESULTS.md and every failing cell with its problem.

    python bench/matrix.py [--models a,b] [--faults a,b] [--styles a,b] [--resume] [--no-timing] [--report-only]

Each cell's script is generated into bench/.matrix/scripts/ and checked in this process the way tests/matrix/ checks
the CI subset (no verified fixes; the profile only where the fault's finding reads it). The reference-recipe cells
(fault 'none') are the timing cells: they are also profiled and benchmarked (short timings), so a slowdown verdict
qdoctor invents on a healthy recipe shows up.
Results go to bench/matrix_cells.json as they come (--resume skips the cells already there; a cell that killed the
process is recorded as such on the next run), so a long run can be stopped and continued.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
warnings.filterwarnings("ignore")
os.environ.setdefault("PYTHONWARNINGS", "ignore")

from common import machine, table, write_section
from matrix.faults import FAULTS
from matrix.generate import Cell, cells
from matrix.outcome import Outcome, check_cell, pending, pending_reason, problems
from matrix.styles import STYLES

RESULTS_JSON = HERE / "matrix_cells.json"
SCRIPTS = HERE / ".matrix" / "scripts"
RUNNING = "running"  # the state of a cell whose check has started and not finished


def load() -> dict[str, dict]:
    return json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}


def save(results: dict[str, dict]) -> None:
    from qdoctor.files import write_text_atomic

    write_text_atomic(RESULTS_JSON, json.dumps(results, indent=1, sort_keys=True) + "\n")


def merge(paths: list[str]) -> dict[str, dict]:
    """The cells of results files written by other runs of this script (--results), finished cells only."""
    merged: dict[str, dict] = {}
    for path in paths:
        merged.update({k: v for k, v in json.loads(Path(path).read_text()).items() if v.get("state") == "done"})
    return merged


def run(chosen: list[Cell], results: dict[str, dict], timing: bool) -> None:
    for i, cell in enumerate(chosen, 1):
        previous = results.get(cell.id)
        if previous is not None:
            if previous.get("state") == RUNNING:  # the process died inside this cell last time
                previous.update(state="done", problems=["the check killed the process (segfault or out of memory)"])
                save(results)
            continue
        results[cell.id] = {"state": RUNNING}
        save(results)
        bench = timing and cell.healthy
        try:
            outcome = check_cell(cell, SCRIPTS, bench=bench)
        except Exception as error:  # qdoctor itself raised: that is a failing cell, with its message
            outcome = Outcome(could_not_check=f"qdoctor raised {type(error).__name__}: {error}"[:300])
        found = problems(cell, outcome)
        results[cell.id] = {"state": "done", "timed": bench, "problems": found, **outcome.as_dict()}
        save(results)
        print(
            f"[{i}/{len(chosen)}] {'ok  ' if not found else 'FAIL'} {cell.id} {outcome.seconds:.1f}s {found}",
            flush=True,
        )


def summary(chosen: list[Cell], results: dict[str, dict], started: str, seconds: float) -> str:
    done = [c for c in chosen if results.get(c.id, {}).get("state") == "done"]
    for c in done:  # judged again against the cell's expectations as they are now (a cell that died has no outcome)
        stored = {k: v for k, v in results[c.id].items() if k in Outcome.__dataclass_fields__}
        if "codes" in stored:
            results[c.id]["problems"] = problems(c, Outcome(**stored))
    passed = {c.id for c in done if not results[c.id]["problems"]}
    rows = []
    for fault in FAULTS:
        row: list[object] = [fault]
        for style in STYLES:
            mine = [c for c in done if c.fault.name == fault and c.style.name == style]
            row.append(f"{sum(c.id in passed for c in mine)}/{len(mine)}" if mine else "-")
        mine = [c for c in done if c.fault.name == fault]
        row.append(f"{sum(c.id in passed for c in mine)}/{len(mine)}")
        rows.append(row)
    by_model = Counter(c.model.name for c in done)
    ok_model = Counter(c.model.name for c in done if c.id in passed)
    known = pending()
    failures = []
    for c in done:
        if c.id in passed:
            continue
        why = pending_reason(c.id, known)
        failures.append(
            f"- `{c.id}`: {'; '.join(results[c.id]['problems'])}"
            + (f" — pending: {why}" if why else "")
            + f" (subject `{results[c.id].get('subject')}`, float `{results[c.id].get('float_baseline')}`)"
        )
    missing = len(chosen) - len(done)
    return (
        f"Machine: {started}. Wall time of this run {seconds / 60:.0f} min"
        f"{f'; {missing} cells of the selection not run yet' if missing else ''}. On a busy machine (a load average "
        "above the core count) the timing cells' verdicts may be withheld as 'machine busy', never invented.\n\n"
        f"{len(done)} cells checked ({len(passed)} passed, {len(done) - len(passed)} failed) of "
        f"{len(cells())} generated: {len({c.model.name for c in done})} models x {len({c.fault.name for c in done})} "
        f"faults x {len({c.style.name for c in done})} styles where the fault applies. A cell passes when its "
        "report has every code the fault implies, none of its absent codes (QD014/QD016/QD017 unless implied) and, "
        "for the reference recipe ('none'), no error-level finding and no crash. Generated by "
        "tests/matrix/generate.py; per-cell results in bench/matrix_cells.json.\n\n"
        "Passed / checked, per fault x style:\n\n"
        + table(["fault", *STYLES, "all"], rows)
        + "\n\nPer model: "
        + ", ".join(f"{m} {ok_model[m]}/{n}" for m, n in by_model.items())
        + "\n\nFailing cells (the pending ones are listed with their reason in tests/matrix/expectations.toml):\n\n"
        + ("\n".join(failures) or "- none")
    )


def _names(text: str) -> list[str] | None:
    return [t for t in text.split(",") if t] or None


def main(argv: list[str]) -> int:
    global RESULTS_JSON
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="")
    parser.add_argument("--faults", default="")
    parser.add_argument("--styles", default="")
    parser.add_argument("--resume", action="store_true", help="keep the results already in bench/matrix_cells.json")
    parser.add_argument("--no-timing", action="store_true", help="do not benchmark the reference-recipe cells")
    parser.add_argument("--report-only", action="store_true", help="rewrite the table from the results file")
    parser.add_argument("--results", default=str(RESULTS_JSON), help="the results file (a second run in parallel)")
    parser.add_argument("--merge", default="", help="results files of other runs to fold in, comma-separated")
    args = parser.parse_args(argv)
    RESULTS_JSON = Path(args.results)
    chosen = cells(_names(args.models), _names(args.faults), _names(args.styles))
    # style by style: a run stopped part-way has checked every model and fault in the first styles
    order = list(STYLES)
    chosen.sort(key=lambda c: order.index(c.style.name))
    started_text, started = machine(), time.perf_counter()
    results = load() if (args.resume or args.report_only) else {}
    if args.merge:
        results.update(merge(_names(args.merge) or []))
        save(results)
    if not args.report_only:
        run(chosen, results, timing=not args.no_timing)
    write_section(
        "matrix",
        "Fault-injection matrix (tests/matrix/)",
        summary(chosen, results, started_text, time.perf_counter() - started),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
