"""Markdown report of a compare: pastes into a GitHub issue or a pull request and reads well there."""

from __future__ import annotations

from typing import Any

from qdoctor.compare.reporters import cells
from qdoctor.compare.result import CompareResult
from qdoctor.facts.location import display_path


def cell(text: str) -> str:
    """Text made safe for a Markdown table cell."""
    return text.replace("|", "\\|").replace("*", "\\*").replace("\n", " ")


def render(result: CompareResult, **_: Any) -> str:
    rec = result.recommendation
    lines = [f"## qdoctor compare: `{display_path(result.spec)}`", ""]
    if rec.recipe:
        lines.append(f"**Recommended: `{rec.recipe}`**: {rec.reason}.")
    else:
        lines.append(f"**No recommendation**: {rec.reason}.")
    if rec.code:
        lines += ["", "```python", rec.code, "```"]
    shown = cells.columns(result)
    if not result.accuracy_judged:
        lines += ["", f"**{cell(cells.table_title(result).capitalize())}**"]
    lines += [
        "",
        "| " + " | ".join(shown) + " |",
        "|" + "|".join("---" if n == "recipe" else "---:" for n in shown) + "|",
    ]
    for row in cells.rows(result):
        values = [cell(row.cells[name]) for name in shown]
        if row.recommended:
            values = [f"**{v}**" for v in values]
        lines.append("| " + " | ".join(values) + " |")
    problems = cells.problems(result)
    if problems or result.not_run:
        lines += ["", "Not measured:", ""]
        lines += [f"- `{recipe}`: {cell(why)}" for recipe, why in problems]
        lines += [f"- `{recipe}`: not run, {cell(why)}" for recipe, why in result.not_run.items()]
    deploy = cells.deploy_lines(result)
    if deploy:
        lines += ["", f"Deployed to {cell(deploy[0])}:", ""]
        lines += [f"- {cell(line)}" for line in deploy[1:]]
    lines += [
        "",
        "<details><summary>How this was measured</summary>",
        "",
        f"- float model: `{result.float_name}`, inputs {cells.inputs_text(result)}",
        f"- calibration: {result.calibration_source}",
        f"- accuracy data: {result.check_source}",
        f"- limit: {cells.limits_text(result)}",
        f"- machine: {cells.machine_text(result)}",
    ]
    lines += [f"- {note}" for note in result.notes]
    if result.wall_s is not None:
        lines.append(f"- compare took {result.wall_s:.0f} s (wall clock), qdoctor {result.qdoctor_version}")
    lines += ["", "</details>", ""]
    return "\n".join(lines)
