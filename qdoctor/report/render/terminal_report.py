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
from qdoctor.facts.location import first_line
from qdoctor.report.model import Report
from qdoctor.report.render.common import (
    CATEGORY_LABEL,
    fmt_bytes,
    fmt_ms,
    speed_text,
    sqnr_cell,
    verified_text,
)

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _header(report: Report) -> Table:
    facts = report.facts
    t = facts.target
    env = facts.environment
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("target", f"{t.spec}  (subject `{t.subject_name}`, float baseline `{t.float_name or '-'}`)")
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
        if bench.speedup is not None:
            style = "green" if bench.speedup >= 1 else "bold red"
            table.add_row("speed", Text(speed_text(bench.speedup), style=style))
    fix_all = report.extras.get("fix_all")
    if fix_all and fix_all.get("headline"):
        style = "bold green" if fix_all.get("after_ms") is not None else "yellow"
        table.add_row("after fixes", Text(fix_all["headline"], style=style))
    if facts.size is not None:
        table.add_row("size", f"{fmt_bytes(facts.size.subject_bytes)} (float {fmt_bytes(facts.size.float_bytes)})")
    if facts.numerics is not None:
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


def _fix_all(fix_all: dict[str, Any]) -> Panel:
    parts: list[Any] = [Text(fix_all.get("headline", ""), style="bold")]
    if fix_all.get("method"):
        parts.append(Text(f"how: {fix_all['method']}", style="dim"))
    if fix_all.get("steps"):
        parts.append(Text("steps: " + "; ".join(fix_all["steps"]), style="dim"))
    if fix_all.get("calibration"):
        parts.append(Text(f"calibration: {fix_all['calibration']}", style="dim"))
    for code, reason in (fix_all.get("left_out") or {}).items():
        parts.append(Text(f"not included: {code}: {reason}", style="dim"))
    saved = fix_all.get("saved")
    if saved:
        parts.append(Text(saved, style="green"))
    if fix_all.get("code"):
        parts.append(Syntax(fix_all["code"], "python", theme="ansi_dark", background_color="default", word_wrap=True))
    return Panel(Group(*parts), title="fix all (verified on a copy)", title_align="left", border_style="green")


def _finding(f: Any) -> Panel:
    parts: list[Any] = [Text(f.message)]
    loc = f.location
    where = []
    if loc.module is not None:
        where.append(f"module `{loc.module or '<root>'}`")
    if loc.file:
        where.append(f"{loc.file}:{loc.line}")
    if where:
        parts.append(Text("at " + ", ".join(where), style="dim"))
    if loc.code:
        parts.append(Text(f"    {loc.code}", style="dim"))
    evidence = {k: v for k, v in f.evidence.items() if v not in (None, [], {})}
    if evidence:
        parts.append(Text("evidence: " + ", ".join(f"{k}={v}" for k, v in evidence.items()), style="dim"))
    verified = verified_text(f.verified)
    if verified:
        parts.append(Text(verified, style="green" if f.verified.get("after_ms") is not None else "dim"))
    if f.fix:
        parts.append(Text("fix:", style="bold"))
        parts.append(Syntax(f.fix, "python", theme="ansi_dark", background_color="default"))
    title = Text.assemble(
        (f"{f.rule} ", SEVERITY_STYLE[f.severity]),
        (f"{f.name} ", "bold"),
        (f"[{f.severity.value}]", SEVERITY_STYLE[f.severity]),
    )
    return Panel(Group(*parts), title=title, title_align="left", border_style=SEVERITY_STYLE[f.severity])


def render(report: Report, width: int = 110, color: bool = False, **_: Any) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    console.print(Panel(_header(report), title="qdoctor check", title_align="left"))
    breakdown = _breakdown(report)
    if breakdown is not None:
        console.print(breakdown)
    for note in report.notes:
        console.print(Text(f"note: {note}", style="cyan"))
    if report.findings:
        counts = {s: sum(1 for f in report.findings if f.severity == s) for s in Severity}
        console.print(
            Text(
                f"\n{len(report.findings)} finding(s): " + ", ".join(f"{n} {s.value}" for s, n in counts.items() if n),
                style="bold",
            )
        )
        for finding in report.findings:
            console.print(_finding(finding))
    else:
        console.print(Text("\nno findings", style="bold green"))
    fix_all = report.extras.get("fix_all")
    if fix_all and fix_all.get("fixes"):
        saved = report.extras.get("saved_fixed")
        if saved and saved.get("saved"):
            fix_all = {
                **fix_all,
                "saved": f"saved to {saved['path']} as {saved['format']} ({saved.get('how', '')}); load: {saved.get('load', '')}",
            }
        console.print(_fix_all(fix_all))
    if report.skipped:
        console.print(Text("skipped rules:", style="dim"))
        for s in report.skipped:
            console.print(Text(f"  {s.rule} {s.name}: {s.reason}", style="dim"))
    t = report.facts.target
    if t.user_stdout.strip():
        lines = t.user_stdout.strip().splitlines()
        console.print(
            Text(f"the script printed {len(lines)} line(s) (kept out of this report; in --format json)", style="dim")
        )
    return buffer.getvalue()
