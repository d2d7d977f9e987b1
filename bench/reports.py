#!/usr/bin/env python3
"""Bug reports as written (issue 16): seed 000's question (dynamic vs static on ResNet-50: speed, size) answered
from its code as pasted, and the reports in fixtures/reports/ checked as they are. Rewrites the reports section of
bench/RESULTS.md.

    python bench/reports.py                    # seed 000 check + compare (fp32, dynamic-x86, fx-x86), the reports
    python bench/reports.py --smoke --no-write # ResNet-18 from torch.hub instead of seed 000, tiny timings

Run it on a quiet machine: the script's own timing loops (110 ResNet-50 forwards per model) and every latency
depend on what else runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from common import machine, qdoctor_cmd, run_quiet, table, write_section

SEED000 = "fixtures/seed000_as_pasted.py"
SMOKE = "fixtures/standin_hub_resnet.py"
REPORTS = ("fixtures/reports/seed004_article.txt", "fixtures/reports/issue_mobilenet_qnnpack.md")


def _json(cmd: list[str]) -> tuple[float, int, dict]:
    start = time.perf_counter()
    done = run_quiet(cmd)
    wall = time.perf_counter() - start
    if done.returncode == 2 or not done.stdout.strip():
        raise SystemExit(f"bench/reports.py: {' '.join(cmd)} exited {done.returncode}: {done.stderr[-500:]}")
    return wall, done.returncode, json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-time", type=float, default=1.0)
    parser.add_argument("--smoke", action="store_true", help="a small model and tiny timings (checks the script)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    target = SMOKE if args.smoke else SEED000
    bench_time = 0.05 if args.smoke else args.bench_time
    header = machine()

    wall, code, check = _json(
        qdoctor_cmd("check", target, "-f", "json", "--no-verify", "--bench-time", str(bench_time), "--timeout", "1800")
    )
    qd007 = next((f for f in check["findings"] if f["rule"] == "QD007"), None)
    qd017 = next((f for f in check["findings"] if f["rule"] == "QD017"), None)
    size = check.get("size") or {}
    check_rows = [
        [
            target,
            code,
            ", ".join(sorted({f["rule"] for f in check["findings"]})),
            f"line {qd017['location']['line']}" if qd017 else "-",
            f"{check['benchmark']['speedup']:.2f}x"
            if check.get("benchmark") and check["benchmark"]["speedup"]
            else "-",
            qd007["evidence"]["best_case_speedup"] if qd007 else "-",
            f"{size.get('float_bytes', 0) / 1e6:.0f} -> {size.get('subject_bytes', 0) / 1e6:.0f} MB" if size else "-",
            ", ".join(s["kind"] for s in check["substitutions"]),
            f"{wall:.0f}",
        ]
    ]
    recipes = "fp32,dynamic-x86,fx-x86"
    wall_c, _, compared = _json(
        qdoctor_cmd("compare", target, "--recipes", recipes, "--bench-time", str(bench_time), "-f", "json")
    )
    compare_rows = []
    for c in compared["candidates"]:
        latency = c.get("latency") or {}
        compare_rows.append(
            [
                c["recipe"],
                f"{latency['median_ms']:.1f}" if latency.get("median_ms") else "-",
                f"{c['speedup']:.2f}x" if c.get("speedup") else "-",
                f"{c['size_bytes'] / 1e6:.0f} MB" if c.get("size_bytes") else "-",
                c.get("status", ""),
            ]
        )
    report_rows = []
    for report in REPORTS:
        wall_r, code_r, doc = _json(qdoctor_cmd("check", report, "-f", "json", "--no-verify", "--bench-time", "0.5"))
        rules = ", ".join(sorted({f["rule"] for f in doc["findings"]}))
        report_rows.append([report, code_r, rules, len(doc["substitutions"]), f"{wall_r:.0f}"])

    body = "\n\n".join(
        [
            header,
            f"`qdoctor check {target}` (the code as pasted; stand-ins for the hub weights and the image folder):",
            table(
                [
                    "target",
                    "exit",
                    "rules",
                    "QD017",
                    "measured speedup",
                    "QD007 best case",
                    "size",
                    "stand-ins",
                    "wall s",
                ],
                check_rows,
            ),
            f"`qdoctor compare {target} --recipes {recipes}` ({wall_c:.0f} s):",
            table(["recipe", "latency ms", "speedup", "size", "status"], compare_rows),
            "Reports checked as written (`qdoctor check REPORT`):",
            table(["report", "exit", "rules", "stand-ins", "wall s"], report_rows),
        ]
    )
    print(body)
    if not args.no_write and not args.smoke:
        write_section("reports", "Bug reports as written: seed 000 answered from its code as pasted", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
