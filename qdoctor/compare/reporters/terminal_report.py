"""Terminal report of a compare with rich: header, the table sorted by speed, the recommendation and its code."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from qdoctor.compare.reporters import cells
from qdoctor.compare.result import CompareResult
from qdoctor.facts.location import display_path

RIGHT = {"latency", "speedup", "size", "smaller", "SQNR", "top-1 agree", "evaluate()", "build"}


def _header(result: CompareResult) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row(
        "target",
        f"{display_path(result.spec)}  (float model `{result.float_name}`, inputs {cells.inputs_text(result)})",
    )
    grid.add_row("calibration", result.calibration_source)
    grid.add_row("accuracy data", result.check_source)
    grid.add_row("limit", cells.limits_text(result))
    grid.add_row("machine", cells.machine_text(result))
    return grid


def _table(result: CompareResult) -> Table:
    shown = cells.columns(result)
    table = Table(title=cells.table_title(result), title_justify="left", show_edge=False)
    for name in shown:
        table.add_column(name, justify="right" if name in RIGHT else "left", no_wrap=name in ("recipe", "latency"))
    for row in cells.rows(result):
        c = row.candidate
        style = (
            "bold green" if row.recommended else ("dim" if not c.ok else ("yellow" if c.within_limit is False else ""))
        )
        values = [row.cells[name] for name in shown]
        if row.recommended:
            values[0] = f"► {values[0]}"
        table.add_row(*values, style=style)
    return table


def _recommendation(result: CompareResult) -> Panel:
    rec = result.recommendation
    parts: list[Any] = [Text(f"{rec.recipe or 'none'}: {rec.reason}")]
    if rec.code:
        parts.append(Syntax(rec.code, "python", theme="ansi_dark", background_color="default"))
    return Panel(Group(*parts), title="recommended", title_align="left", border_style="green" if rec.recipe else "red")


def render(result: CompareResult, width: int = 120, color: bool = False, **_: Any) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    console.print(Panel(_header(result), title="qdoctor compare", title_align="left"))
    console.print(_table(result))
    console.print(_recommendation(result))
    problems = cells.problems(result)
    if problems:
        console.print(Text("not measured:", style="bold"))
        for recipe, why in problems:
            console.print(Text(f"  {recipe}: {why}"))
    deploy = cells.deploy_lines(result)
    if deploy:
        console.print(Text(f"deployed to {deploy[0]}:", style="bold"))
        for line in deploy[1:]:
            console.print(Text(f"  {line}"))
    for recipe, why in result.not_run.items():
        console.print(Text(f"not run: {recipe} ({why})", style="dim"))
    for note in result.notes:
        console.print(Text(f"note: {note}", style="cyan"))
    if result.wall_s is not None:
        console.print(Text(f"compare took {result.wall_s:.0f} s (wall clock)", style="dim"))
    return buffer.getvalue()
