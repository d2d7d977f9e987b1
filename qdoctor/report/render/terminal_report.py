"""Terminal report with rich: header, time breakdown bars, findings. Rendered to a string."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from qdoctor import facts as F
from qdoctor.diagnose.findings import Severity
from qdoctor.facts.location import display_path, first_line
from qdoctor.facts.prescription import FallbackLadder, FixAll, SavedFixed, Treatment
from qdoctor.report.model import Report
from qdoctor.report.render.common import (
    CATEGORY_LABEL,
    ERROR_HEADER,
    FALLBACK_HEADER,
    TREATMENT_HEADER,
    error_intro,
    error_rows,
    fallback_rows,
    fmt_bytes,
    fmt_ms,
    measurement_text,
    prescription_of,
    ratio_speed_text,
    sqnr_cell,
    treatment_outcome,
    treatment_rows,
    verified_text,
    weights_note,
)

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _header(report: Report, root: str | None) -> Table:
    facts = report.facts
    t = facts.target
    env = facts.environment
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "target", f"{display_path(t.spec, root)}  (subject `{t.subject_name}`, float baseline `{t.float_name or '-'}`)"
    )
    caveat = t.invented_inputs_caveat()
    if caveat is not None:
        table.add_row("inputs", Text(caveat, style="yellow"))
    untrained = weights_note(facts)
    if untrained is not None:
        table.add_row("weights", Text(untrained, style="yellow"))
    bench = facts.benchmark
    crash = facts.crash
    if crash is not None:
        where = f" in `{crash.module}`" if crash.module else ""
        table.add_row(
            "subject", Text(f"CRASHED{where}: {crash.type}: {first_line(crash.message)[:160]}", style="bold red")
        )
    elif bench is not None:
        table.add_row("subject", fmt_ms(bench.subject))
    if bench is not None:
        table.add_row("float", fmt_ms(bench.float_baseline))
        ratio = bench.speedup_ratio
        if ratio is not None:
            style = "bold red" if ratio.clearly_below(1.0) else ("green" if ratio.clearly_above(1.0) else "yellow")
            table.add_row("speed", Text(ratio_speed_text(ratio), style=style))
    measured = measurement_text(report)
    if measured:
        table.add_row("measured", measured)
    fix_all = prescription_of(report)[0]
    if fix_all is not None and fix_all.headline:
        style = "bold green" if fix_all.after_ms is not None else "yellow"
        table.add_row("after fixes", Text(fix_all.headline, style=style))
    if facts.size is not None:
        table.add_row("size", f"{fmt_bytes(facts.size.subject_bytes)} (float {fmt_bytes(facts.size.float_bytes)})")
    if facts.numerics is not None:
        drop = facts.numerics.accuracy_drop_points
        if drop is not None:
            table.add_row("evaluate() drop", f"{drop:.2f} points")
        table.add_row("SQNR vs float", sqnr_cell(facts))
    table.add_row(
        "machine",
        f"{env.cpu_model}, {env.cpu_count} cores, {env.machine} {'/'.join(env.cpu_isa) or env.cpu_capability}; "
        f"torch {env.torch_version}, engine {env.quantized_engine}, {env.num_threads} threads",
    )
    return table


def _breakdown(report: Report) -> Table | None:
    facts = report.facts
    if facts.profile is None and facts.float_profile is None:
        return None
    table = Table(title="time breakdown (torch.profiler, per forward)", title_justify="left", show_edge=False)
    table.add_column("category")
    table.add_column("subject", justify="right")
    table.add_column("")
    table.add_column("float", justify="right")
    for cat in F.CATEGORIES:
        sub = facts.profile
        flt = facts.float_profile
        s_share = sub.share(cat) if sub else 0.0
        if (sub is None or sub.time_ms(cat) == 0) and (flt is None or flt.time_ms(cat) == 0):
            continue
        bar = "█" * round(s_share * 30)
        table.add_row(
            CATEGORY_LABEL[cat],
            f"{sub.time_ms(cat):.2f} ms {s_share:4.0%}" if sub else "-",
            bar,
            f"{flt.time_ms(cat):.2f} ms {flt.share(cat):4.0%}" if flt else "-",
        )
    return table


def _treatment(treatment: Treatment) -> Panel:
    table = Table(box=None, show_header=True, header_style="bold")
    for column in TREATMENT_HEADER:
        table.add_column(column)
    for row in treatment_rows(treatment):
        table.add_row(*row)
    parts: list[Any] = [table, Text(treatment_outcome(treatment), style="dim")]
    if treatment.final_code:
        parts.append(Text("the composed recipe of every round:", style="bold"))
        parts.append(
            Syntax(treatment.final_code, "python", theme="ansi_dark", background_color="default", word_wrap=True)
        )
    return Panel(Group(*parts), title="treatment plan: diagnose, fix, examine the fixed model again", expand=False)


def _fix_all(fix_all: FixAll, saved: SavedFixed | None) -> Panel:
    parts: list[Any] = [Text(fix_all.headline, style="bold")]
    if fix_all.method:
        parts.append(Text(f"how: {fix_all.method}", style="dim"))
    if fix_all.steps:
        parts.append(Text("steps: " + "; ".join(fix_all.steps), style="dim"))
    if fix_all.calibration:
        parts.append(Text(f"calibration: {fix_all.calibration}", style="dim"))
    for code, reason in fix_all.left_out.items():
        parts.append(Text(f"not included: {code}: {reason}", style="dim"))
    if saved is not None and saved.saved:
        parts.append(
            Text(
                f"saved to {saved.path} as {saved.format} ({saved.how or ''}); load: {saved.load or ''}", style="green"
            )
        )
    if fix_all.code:
        parts.append(Syntax(fix_all.code, "python", theme="ansi_dark", background_color="default", word_wrap=True))
    return Panel(Group(*parts), title="fix all (verified on a copy)", title_align="left", border_style="green")


def _error_sources(report: Report) -> Table | None:
    rows, left_out = error_rows(report)
    if not rows:
        return None
    caption = error_intro(report) + (f" {left_out} more layer(s) in --format json/html." if left_out else "")
    table = Table(title="where the error comes from", title_justify="left", caption=caption, caption_justify="left")
    for name in ERROR_HEADER:
        table.add_column(name, justify="right" if name not in ("layer", "type") else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _fallback(fallback: FallbackLadder) -> Panel:
    table = Table(box=None)
    for name in FALLBACK_HEADER:
        table.add_column(name)
    for row in fallback_rows(fallback):
        table.add_row(*row)
    parts: list[Any] = [Text(f"target: {fallback.target}", style="dim"), table]
    chosen = fallback.steps[fallback.chosen] if fallback.chosen is not None else None
    if chosen is not None and chosen.code:
        parts.append(Syntax(chosen.code, "python", theme="ansi_dark", background_color="default", word_wrap=True))
    return Panel(Group(*parts), title="speed/accuracy: the worst layers kept in float", title_align="left")


def _finding(f: Any, root: str | None) -> Panel:
    parts: list[Any] = [Text(f.message)]
    loc = f.location
    where = []
    if loc.module is not None:
        where.append(f"module `{loc.module or '<root>'}`")
    if loc.file:
        where.append(f"{display_path(loc.file, root)}:{loc.line}")
    if where:
        parts.append(Text("at " + ", ".join(where), style="dim"))
    if loc.code:
        parts.append(Text(f"    {loc.code}", style="dim"))
    evidence = {k: v for k, v in f.evidence.items() if v not in (None, [], {})}
    if evidence:
        parts.append(Text("evidence: " + ", ".join(f"{k}={v}" for k, v in evidence.items()), style="dim"))
    verified = verified_text(f.verified)
    if verified:
        parts.append(
            Text(verified, style="green" if f.verified is not None and f.verified.after_ms is not None else "dim")
        )
    if f.fix:
        parts.append(Text("fix:", style="bold"))
        parts.append(Syntax(f.fix, "python", theme="ansi_dark", background_color="default"))
    title = Text.assemble(
        (f"{f.rule} ", SEVERITY_STYLE[f.severity]),
        (f"{f.name} ", "bold"),
        (f"[{f.severity.value}]", SEVERITY_STYLE[f.severity]),
        (f" {f.consequence_text}" if f.consequence_of else "", "italic"),
    )
    return Panel(Group(*parts), title=title, title_align="left", border_style=SEVERITY_STYLE[f.severity])


def render(report: Report, width: int = 110, color: bool = False, root: str | None = None, **_: Any) -> str:
    """``root``: file paths under it are shown relative to it (default: the current directory)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    console.print(Panel(_header(report, root), title="qdoctor check", title_align="left"))
    breakdown = _breakdown(report)
    if breakdown is not None:
        console.print(breakdown)
    for note in report.notes:
        console.print(Text(f"note: {note}", style="cyan"))
    error_table = _error_sources(report)
    if error_table is not None:
        console.print(error_table)
    if report.findings:
        faults = [f for f in report.findings if not f.consequence_of]
        counts = {s: sum(1 for f in faults if f.severity == s) for s in Severity}
        consequences = len(report.findings) - len(faults)
        console.print(
            Text(
                f"\n{len(faults)} finding(s): "
                + ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
                + (f" (+{consequences} consequence(s) of them)" if consequences else ""),
                style="bold",
            )
        )
        for finding in report.findings:
            console.print(_finding(finding, root))
    else:
        console.print(Text("\nno findings", style="bold green"))
    fix_all, fallback, saved = prescription_of(report)
    if fix_all is not None and fix_all.fixes:
        console.print(_fix_all(fix_all, saved))
    if fallback is not None:
        console.print(_fallback(fallback))
    if report.treatment is not None:
        console.print(_treatment(report.treatment))
    skipped = report.skipped_here()
    if skipped:
        console.print(Text("skipped rules:", style="dim"))
        for s in skipped:
            console.print(Text(f"  {s.rule} {s.name}: {s.reason}", style="dim"))
    t = report.facts.target
    if t.user_stdout.strip():
        lines = t.user_stdout.strip().splitlines()
        console.print(
            Text(f"the script printed {len(lines)} line(s) (kept out of this report; in --format json)", style="dim")
        )
    return buffer.getvalue()
