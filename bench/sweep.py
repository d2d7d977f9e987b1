"""The healthy-recipe sweep (tests/matrix/recipes.py): every torchvision quantizable model with its reference PTQ
recipe, FX PTQ and PT2E X86-Inductor on resnet18 and mobilenet_v2, the BERT dynamic quantization tutorial, torchao
int8 dynamic on a BERT-small; random weights. Each is checked with timing and the profile; a warning or error finding
passes only as a measured true cause written down with the recipe. Writes its section of bench/RESULTS.md.

    python bench/sweep.py [recipe ...]     # or --report-only: the table from bench/sweep_results.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
warnings.filterwarnings("ignore")

from common import machine, table, write_section
from matrix.outcome import Outcome, check_script, sweep_pending, sweep_problems
from matrix.recipes import RECIPES

SCRIPTS = HERE / ".matrix" / "sweep"
RESULTS_JSON = HERE / "sweep_results.json"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="The healthy-recipe sweep; writes its section of bench/RESULTS.md.")
    parser.add_argument("recipes", nargs="*", help=f"recipes to run (default: all): {', '.join(RECIPES)}")
    parser.add_argument("--report-only", action="store_true", help="the table from bench/sweep_results.json")
    args = parser.parse_args(argv)
    unknown = [n for n in args.recipes if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s): {', '.join(unknown)}")
    chosen = [] if args.report_only else [RECIPES[n] for n in args.recipes] or list(RECIPES.values())
    started_text = machine()
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    for recipe in chosen:
        try:
            outcome = check_script(recipe.write(SCRIPTS), bench=True, profile=True)
        except Exception as error:  # qdoctor itself raised: a failing recipe, with its message
            outcome = Outcome(could_not_check=f"qdoctor raised {type(error).__name__}: {error}"[:300])
        found = sweep_problems(recipe.known, outcome)
        measured = f"{time.strftime('%H:%M', time.gmtime())} UTC, load {os.getloadavg()[0]:.1f}"
        results[recipe.name] = {"problems": found, **outcome.as_dict(), "measured": measured}
        RESULTS_JSON.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(f"{'ok  ' if not found else 'FAIL'} {recipe.name} {outcome.seconds:.0f}s {found}", flush=True)
    pending = sweep_pending()
    rows = []
    for recipe in RECIPES.values():
        r = results.get(recipe.name)
        if r is None:
            rows.append([recipe.name, "not run", "", "", ""])
            continue
        listed = [f"{c} ({'error' if c in r['errors'] else 'warning'})" for c in sorted({*r["errors"], *r["warnings"]})]
        outcome = Outcome(**{k: v for k, v in r.items() if k not in ("problems", "measured")})
        found = sweep_problems(recipe.known, outcome)  # judged again: a true cause may have been written down since
        verdict = "clean" if not found else ("pending" if recipe.name in pending else "FAILED")
        why = "; ".join(f"{c}: {recipe.known[c]}" for c in recipe.known) or pending.get(recipe.name, "")
        shown = [recipe.name, verdict, ", ".join(listed) or "-", r.get("speedup") or "-"]
        rows.append([*shown, r.get("measured", "-"), why or "-"])
    body = (
        f"Machine: {started_text} (this run; rows keep the time and 1-minute load average they were measured at: "
        "above the core count the machine was busy, and a verdict under contention says 'machine busy').\n\n"
        "Each recipe runs as published, on random weights (nothing downloaded), checked by qdoctor with timing (short "
        "timings, no verified fixes). 'clean': no warning or error finding and no crash; a finding is accepted only "
        "as a measured true cause written in the last column; 'pending': fails today because of work pending in "
        "another branch (tests/matrix/expectations.toml, [sweep_pending]). Per-recipe results: bench/sweep_results.json.\n\n"
        + table(
            ["recipe", "verdict", "warning/error findings", "int8 vs fp32", "measured", "true cause / pending reason"],
            rows,
        )
    )
    write_section("sweep", "Healthy-recipe sweep (tests/matrix/recipes.py)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
