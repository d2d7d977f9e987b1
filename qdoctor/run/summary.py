"""Several targets checked at once: one report each, then a summary table; the JSON document that holds them all.

Pure functions of qdoctor.run.batch.Outcome lists; nothing here prints.
"""

from __future__ import annotations

import io
import json
from typing import Any

from qdoctor import __version__
from qdoctor.facts.location import display_path
from qdoctor.report.model import SCHEMA_VERSION, to_dict
from qdoctor.run.batch import CHECKED, NO_MODEL, Outcome, worst_exit_code


def not_quantized(outcome: Outcome) -> bool:
    """A float model and nothing to say about it (a float model whose quantization step failed has its finding)."""
    facts = outcome.report.facts if outcome.report is not None else None
    return (
        outcome.status == CHECKED
        and facts is not None
        and facts.modules is not None
        and not facts.is_quantized
        and not (outcome.report is not None and outcome.report.findings)
    )


def result_text(outcome: Outcome) -> str:
    """One short line: what became of this target."""
    if outcome.status == NO_MODEL:
        return "skipped: no nn.Module in this file"
    if outcome.status != CHECKED or outcome.report is None:
        return f"{outcome.status}: {outcome.reason or ''}"
    if not_quantized(outcome):
        return "not quantized: nothing to diagnose (try `qdoctor compare`)"
    findings = outcome.report.findings
    if not findings:
        return "no findings"
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.severity.value] = counts.get(finding.severity.value, 0) + 1
    codes = ", ".join(sorted({f.rule for f in findings}))
    return ", ".join(f"{n} {severity}" for severity, n in counts.items()) + f" ({codes})"


def _latency(outcome: Outcome) -> tuple[str, str]:
    facts = outcome.report.facts if outcome.report is not None else None
    bench = facts.benchmark if facts is not None else None
    program = facts.deploy.subject() if facts is not None and facts.deploy is not None else None
    if bench is None and program is not None and program.latency is not None:
        # a .pte: its one program timed in its runtime (no float baseline, no speedup)
        return f"{program.latency.median_ms:.2f} ms", "-"
    if bench is None or bench.subject is None:
        return "-", "-"
    speed = "-" if bench.speedup is None else f"{bench.speedup:.2f}x"
    return f"{bench.subject.median_ms:.2f} ms", speed


def summary_rows(outcomes: list[Outcome], fail_on: str = "warning", exit_zero: bool = False) -> list[dict[str, Any]]:
    rows = []
    for outcome in outcomes:
        report = outcome.report
        worst = report.worst() if report is not None and outcome.status == CHECKED else None
        rows.append(
            {
                "target": display_path(outcome.spec),
                "status": outcome.status,
                "exit_code": outcome.exit_code(fail_on, exit_zero),
                "findings": len(report.findings) if report is not None else None,
                "worst": worst.value if worst is not None else None,
                "reason": outcome.reason,
                "seconds": round(outcome.seconds, 2),
            }
        )
    return rows


def to_json_document(outcomes: list[Outcome], fail_on: str = "warning", exit_zero: bool = False) -> dict[str, Any]:
    """{"reports": [...], "summary": {...}}: every report in full (the single-target JSON shape), in order."""
    reports = []
    for outcome in outcomes:
        if outcome.report is not None:
            reports.append(to_dict(outcome.report))
        else:
            reports.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "qdoctor_version": __version__,
                    "target": {"spec": display_path(outcome.spec)},
                    "worker": {
                        "status": outcome.status,
                        "reason": outcome.reason,
                        "seconds": round(outcome.seconds, 2),
                    },
                    "findings": [],
                }
            )
    return {
        "schema_version": SCHEMA_VERSION,
        "qdoctor_version": __version__,
        "reports": reports,
        "summary": {
            "exit_code": worst_exit_code(outcomes, fail_on, exit_zero),
            "targets": summary_rows(outcomes, fail_on, exit_zero),
        },
    }


def render_json(outcomes: list[Outcome], fail_on: str = "warning", exit_zero: bool = False) -> str:
    return json.dumps(to_json_document(outcomes, fail_on, exit_zero), indent=2) + "\n"


def render_table(
    outcomes: list[Outcome], fail_on: str = "warning", exit_zero: bool = False, color: bool = False, width: int = 110
) -> str:
    """The summary table that follows the reports of several targets."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"qdoctor check: {len(outcomes)} targets", title_justify="left", show_edge=False)
    table.add_column("target", overflow="fold")
    table.add_column("result", overflow="fold")
    table.add_column("subject", justify="right")
    table.add_column("speedup", justify="right")
    table.add_column("exit", justify="right")
    for outcome in outcomes:
        code = outcome.exit_code(fail_on, exit_zero)
        style = "green" if code == 0 else "yellow" if code == 1 else "bold red"
        latency, speed = _latency(outcome)
        table.add_row(display_path(outcome.spec), Text(result_text(outcome), style=style), latency, speed, str(code))
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    console.print(table)
    worst = worst_exit_code(outcomes, fail_on, exit_zero)
    console.print(Text(f"exit code {worst} (the worst of {len(outcomes)})", style="bold"))
    return buffer.getvalue()
