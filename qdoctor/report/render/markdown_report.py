"""Markdown report (GitHub-flavoured): pastes into an issue and reads well there.

Summary table (subject vs float: latency with spread, speedup, size, SQNR), time breakdown, findings with fix code
blocks and verified effects, the per-module table folded, and the environment so triagers can compare machines.
"""

from __future__ import annotations

from typing import Any

from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.facts.location import display_path, first_line
from qdoctor.report.model import Report
from qdoctor.report.render.common import (
    ERROR_HEADER,
    FALLBACK_HEADER,
    TREATMENT_HEADER,
    category_rows,
    environment_rows,
    error_intro,
    error_rows,
    evidence_items,
    fallback_rows,
    finding_counts,
    fmt_bytes,
    fmt_ms,
    measurement_text,
    module_rows,
    prescription_of,
    ratio_speed_text,
    sqnr_cell,
    target_title,
    treatment_outcome,
    treatment_rows,
    verified_text,
    weights_note,
)

SEVERITY_MARK = {Severity.ERROR: "🔴", Severity.WARNING: "🟡", Severity.INFO: "🔵"}
MAX_MODULE_ROWS = 30


def cell(value: Any) -> str:
    """Text safe inside a table cell: no pipes or newlines."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def code_span(value: str) -> str:
    """Inline code that survives backticks inside ``value``."""
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def code_block(code: str, language: str = "python") -> list[str]:
    fence = "```"
    while fence in code:
        fence += "`"
    return [f"{fence}{language}", code.rstrip("\n"), fence]


def table(header: list[str], rows: list[list[Any]], align: str = "") -> list[str]:
    """``align``: one letter per column, l or r (left when missing)."""
    marks = ["---:" if (align[i : i + 1] == "r") else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _summary(report: Report) -> list[str]:
    facts = report.facts
    target = facts.target
    bench = facts.benchmark
    subject_head = f"subject {code_span(target.subject_name)}"
    float_head = f"float baseline {code_span(target.float_name)}" if target.float_name else "float baseline"
    rows: list[list[Any]] = []
    caveat = target.invented_inputs_caveat()
    if caveat is not None:
        rows.append(["inputs", f"**{caveat}**", "-"])
    untrained = weights_note(facts)
    if untrained is not None:
        rows.append(["weights", f"**{untrained}**", "-"])
    crash = facts.crash
    if crash is not None:
        where = f" in module {code_span(crash.module)}" if crash.module else ""
        rows.append(["status", f"**crashed**{where}: {crash.type}: {first_line(crash.message)[:200]}", "-"])
    if bench is not None:
        subject_latency = fmt_ms(bench.subject) if bench.subject else (bench.subject_error or "-")
        rows.append(["latency (median ± IQR)", subject_latency, fmt_ms(bench.float_baseline)])
        if bench.speedup_ratio is not None:
            rows.append(["speed", f"**{ratio_speed_text(bench.speedup_ratio)}**", "1.00x"])
        measured = measurement_text(report)
        if measured:
            rows.append(["measured", measured, "-"])
    else:
        rows.append(["latency", facts.unavailable.get("benchmark", "not measured"), "-"])
    fix_all = prescription_of(report)[0]
    if fix_all is not None and fix_all.headline:
        rows.append(["after all fixes", f"**{fix_all.headline}**", "-"])
    if facts.size is not None:
        rows.append(["size (serialized)", fmt_bytes(facts.size.subject_bytes), fmt_bytes(facts.size.float_bytes)])
    if facts.numerics is not None:
        drop = facts.numerics.accuracy_drop_points
        if drop is not None:
            rows.append(["evaluate() drop", f"{drop:.2f} points", "-"])
        rows.append(["SQNR vs float", sqnr_cell(facts), "-"])
    elif "numerics" in facts.unavailable:
        rows.append(["SQNR vs float", f"not measured: {facts.unavailable['numerics']}", "-"])
    return table(["", subject_head, float_head], rows, "lrr")


def _breakdown(report: Report) -> list[str]:
    rows = category_rows(report.facts)
    if not rows:
        return []
    facts = report.facts

    def both(ms: float | None, share: float | None) -> str:
        return "-" if ms is None else f"{ms:.2f} ms ({share:.0%})"

    lines = [
        "",
        "### Time breakdown",
        "",
        "torch.profiler self time per forward, by category (shares, not latency):",
        "",
    ]
    lines += table(
        ["category", "subject", "float baseline"],
        [[label, both(s_ms, s_share), both(f_ms, f_share)] for _, label, s_ms, s_share, f_ms, f_share in rows],
        "lrr",
    )
    totals = [
        f"{facts.profile.total_ms:.2f} ms" if facts.profile else "-",
        f"{facts.float_profile.total_ms:.2f} ms" if facts.float_profile else "-",
    ]
    lines.append(f"| **total** | **{totals[0]}** | **{totals[1]}** |")
    return lines


def _modules(report: Report) -> list[str]:
    rows = module_rows(report.facts)
    if not rows:
        return []
    shown = rows[:MAX_MODULE_ROWS]
    lines = ["", "<details><summary>Per-module time (subject)</summary>", ""]
    lines += table(
        ["module", "type", "runs on", "time / forward", "share"],
        [
            [
                code_span(r.path),
                r.type,
                r.ran_on,
                "-" if r.time_ms is None else f"{r.time_ms:.3f} ms",
                "-" if r.share is None else f"{r.share:.0%}",
            ]
            for r in shown
        ],
        "lllrr",
    )
    if len(rows) > len(shown):
        lines += ["", f"... and {len(rows) - len(shown)} more modules (all of them in `--format json` / `html`)."]
    lines += ["", "</details>"]
    return lines


def _finding(f: Finding, root: str | None) -> list[str]:
    title = f"#### {SEVERITY_MARK[f.severity]} {f.rule} {f.name} ({f.severity.value})"
    lines = ["", title + (f" — {f.consequence_text}" if f.consequence_of else ""), "", f.message, ""]
    loc = f.location
    where = []
    if loc.module is not None:
        where.append(f"module {code_span(loc.module or '<root>')}")
    if loc.file:
        where.append(
            code_span(f"{display_path(loc.file, root)}:{loc.line}" if loc.line else display_path(loc.file, root))
        )
    if where:
        lines.append(f"- **where:** {', '.join(where)}" + (f": {code_span(loc.code)}" if loc.code else ""))
    evidence = evidence_items(f.evidence)
    if evidence:
        lines.append("- **evidence:** " + ", ".join(f"{k}={code_span(str(v))}" for k, v in evidence))
    verified = verified_text(f.verified)
    if verified:
        measured = f.verified is not None and f.verified.after_ms is not None
        lines.append(f"- **{verified}**" if measured else f"- {verified}")
    if f.fix:
        lines += ["", "**Fix:**", ""] + code_block(f.fix)
    return lines


def _error_sources(report: Report) -> list[str]:
    rows, left_out = error_rows(report)
    if not rows:
        return []
    lines = ["", "### Where the error comes from", "", error_intro(report), ""]
    lines += table(ERROR_HEADER, rows)
    if left_out:
        lines += ["", f"{left_out} more layer(s) in `--format json` (`numerics.layers`) and `--format html`."]
    return lines


def render(report: Report, root: str | None = None, **_: Any) -> str:
    """``root``: file paths under it are shown relative to it (the CLI passes the working directory)."""
    facts = report.facts
    target = facts.target
    lines = [f"## qdoctor check: {code_span(target_title(target, root))}", ""]
    lines.append(
        f"**{finding_counts(report)}**" + (f" · qdoctor {report.qdoctor_version}" if report.qdoctor_version else "")
    )
    lines.append("")
    lines += _summary(report)
    for note in report.notes:
        lines += ["", f"> note: {note}"]
    lines += _breakdown(report)
    lines += _modules(report)
    lines += _error_sources(report)
    lines += ["", "### Findings"]
    if report.findings:
        for finding in report.findings:
            lines += _finding(finding, root)
    else:
        lines += ["", "No findings."]
    fallback = prescription_of(report)[1]
    if fallback is not None:
        lines += [
            "",
            "### Speed/accuracy: the worst layers kept in float",
            "",
            f"Target: {fallback.target}.",
            "",
        ]
        lines += table(FALLBACK_HEADER, fallback_rows(fallback))
        chosen = fallback.chosen
        if chosen is not None and fallback.steps[chosen].code:
            lines += [""] + code_block(fallback.steps[chosen].code or "")
    if report.treatment is not None:
        lines += ["", "### Treatment plan: diagnose, fix, examine the fixed model again", ""]
        lines += table(TREATMENT_HEADER, treatment_rows(report.treatment))
        lines += ["", treatment_outcome(report.treatment)]
        if report.treatment.final_code:
            lines += ["", "The composed recipe of every round:", ""] + code_block(report.treatment.final_code)
    skipped = report.skipped_here()
    if skipped:
        lines += ["", "<details><summary>Skipped rules</summary>", ""]
        lines += [f"- {s.rule} {s.name}: {s.reason}" for s in skipped]
        lines += ["", "</details>"]
    lines += ["", "### Environment", ""]
    lines += table(["", ""], [[k, v] for k, v in environment_rows(facts.environment)])
    inputs = ", ".join("x".join(str(d) for d in t.shape) or "scalar" for t in target.inputs) or "-"
    lines += [f"| inputs | {cell(inputs)}{' (inferred)' if target.inputs_inferred else ''} |"]
    return "\n".join(lines) + "\n"
