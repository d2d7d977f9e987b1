"""HTML report of a compare: one self-contained file (inline CSS and SVG, no script, no network) with a
latency / size / accuracy chart of every measured recipe, the table, and the recommended recipe's code."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from qdoctor.compare.reporters import cells
from qdoctor.compare.result import FP32, CompareResult
from qdoctor.facts.location import display_path

ROW_H = 24
LABEL_W = 120
PANEL_W = 260
GAP = 30
TOP = 44
COLORS = {"recommended": "#2e7d32", "fp32": "#757575", "lossy": "#e65100", "other": "#1565c0"}

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; } th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; }
th { text-align: left; background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.recommended td { font-weight: bold; background: #e8f5e9; } tr.inactive td { color: #888; }
pre { background: #f6f8fa; padding: 12px; overflow-x: auto; font-size: 0.9em; }
.rec { border-left: 4px solid #2e7d32; padding: 4px 12px; } dt { font-weight: bold; } dd { margin: 0 0 6px 0; }
"""


def _color(row: cells.Row) -> str:
    if row.recommended:
        return COLORS["recommended"]
    if row.candidate.recipe == FP32:
        return COLORS["fp32"]
    if row.candidate.within_limit is False:
        return COLORS["lossy"]
    return COLORS["other"]


def _accuracy_title(result: CompareResult) -> tuple[str, float | None]:
    """The accuracy panel's title and the limit line to draw on it (in the panel's unit)."""
    fp32 = result.get(FP32)
    if result.metric_name and fp32 is not None and fp32.metric is not None:
        scale = 0.01 if 0.0 <= fp32.metric <= 1.0 else 1.0
        return "evaluate() (line: the limit)", fp32.metric - result.limits.max_drop * scale
    return "SQNR vs fp32, dB (line: the limit)", result.limits.min_sqnr_db


def chart(result: CompareResult) -> str:
    """An inline SVG: one row per measured recipe, fastest first; panels for latency, size and accuracy."""
    measured = [r for r in cells.rows(result) if r.candidate.ok]
    if not measured:
        return ""
    accuracy_title, limit = _accuracy_title(result)
    panels = [
        ("latency", "latency, ms (median; whisker: IQR)", None),
        ("size", "serialized size, MB", None),
        ("accuracy", accuracy_title, limit),
    ]
    width = LABEL_W + len(panels) * (PANEL_W + GAP)
    height = TOP + ROW_H * len(measured) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="system-ui, sans-serif" font-size="12" role="img" aria-label="latency, size and accuracy per recipe">'
    ]
    for i, row in enumerate(measured):
        y = TOP + i * ROW_H
        weight = "bold" if row.recommended else "normal"
        out.append(
            f'<text x="{LABEL_W - 8}" y="{y + 16}" text-anchor="end" font-weight="{weight}">{escape(row.candidate.recipe)}</text>'
        )
    for p, (kind, title, line) in enumerate(panels):
        x0 = LABEL_W + p * (PANEL_W + GAP)
        values = [cells.chart_value(r.candidate, kind) for r in measured]
        present = [v for v in values if v is not None]
        top = max(present + ([line] if line is not None else []), default=0.0)
        bar_w = PANEL_W - 60  # room for the value's text
        out.append(f'<text x="{x0}" y="{TOP - 14}" font-weight="bold">{escape(title)}</text>')
        out.append(f'<line x1="{x0}" y1="{TOP - 4}" x2="{x0}" y2="{height - 8}" stroke="#bbb"/>')
        for i, (row, value) in enumerate(zip(measured, values, strict=False)):
            y = TOP + i * ROW_H
            if value is None:
                label = "identical" if kind == "accuracy" and row.candidate.recipe == FP32 else "-"
                out.append(f'<text x="{x0 + 4}" y="{y + 16}" fill="#666">{label}</text>')
                continue
            w = 0.0 if top <= 0 else max(1.0, bar_w * value / top)
            out.append(
                f'<rect x="{x0}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 8}" fill="{_color(row)}">'
                f"<title>{escape(row.candidate.recipe)}: {value:.4g}</title></rect>"
            )
            if kind == "latency" and row.candidate.latency is not None and top > 0:
                half = bar_w * row.candidate.latency.iqr_ms / top / 2
                right = min(x0 + w + half, x0 + PANEL_W)  # a spread wider than the panel is cut at its edge
                out.append(
                    f'<line x1="{max(x0, x0 + w - half):.1f}" y1="{y + ROW_H / 2}" x2="{right:.1f}" '
                    f'y2="{y + ROW_H / 2}" stroke="#000" stroke-width="1.5"/>'
                )
            out.append(f'<text x="{x0 + w + 4:.1f}" y="{y + 16}">{value:.4g}</text>')
        if line is not None and top > 0 and math.isfinite(line):
            lx = x0 + bar_w * max(line, 0.0) / top
            out.append(
                f'<line x1="{lx:.1f}" y1="{TOP - 4}" x2="{lx:.1f}" y2="{height - 8}" stroke="#c62828" '
                'stroke-dasharray="4 3"/>'
            )
    out.append("</svg>")
    return "\n".join(out)


def render(result: CompareResult, **_: Any) -> str:
    rec = result.recommendation
    shown = cells.columns(result)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>qdoctor compare: {escape(display_path(result.spec))}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>qdoctor compare: <code>{escape(display_path(result.spec))}</code></h1>",
        '<div class="rec">',
        f"<p><strong>Recommended: {escape(rec.recipe or 'none')}</strong>: {escape(rec.reason)}.</p>",
    ]
    if rec.code:
        parts.append(f"<pre><code>{escape(rec.code)}</code></pre>")
    parts.append("</div>")
    parts += ["<h2>Latency, size and accuracy</h2>", chart(result)]
    title = cells.table_title(result)
    parts += [f"<h2>All {escape(title)}</h2>", "<table><thead><tr>"]
    parts += [f"<th>{escape(name)}</th>" for name in shown]
    parts.append("</tr></thead><tbody>")
    for row in cells.rows(result):
        klass = "recommended" if row.recommended else ("inactive" if not row.candidate.ok else "")
        parts.append(f'<tr class="{klass}">')
        for name in shown:
            cell_class = "" if name == "recipe" else ' class="num"'
            parts.append(f"<td{cell_class}>{escape(row.cells[name])}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    problems = cells.problems(result)
    if problems or result.not_run:
        parts.append("<h2>Not measured</h2><ul>")
        parts += [f"<li><code>{escape(recipe)}</code>: {escape(why)}</li>" for recipe, why in problems]
        parts += [
            f"<li><code>{escape(recipe)}</code>: not run, {escape(why)}</li>" for recipe, why in result.not_run.items()
        ]
        parts.append("</ul>")
    deploy = cells.deploy_lines(result)
    if deploy:
        parts.append(f"<h2>Deployed to {escape(deploy[0])}</h2><ul>")
        parts += [f"<li>{escape(line)}</li>" for line in deploy[1:]]
        parts.append("</ul>")
    parts += [
        "<h2>How this was measured</h2><dl>",
        f"<dt>float model</dt><dd><code>{escape(str(result.float_name))}</code>, inputs {escape(cells.inputs_text(result))}</dd>",
        f"<dt>calibration</dt><dd>{escape(result.calibration_source)}</dd>",
        f"<dt>accuracy data</dt><dd>{escape(result.check_source)}</dd>",
        f"<dt>limit</dt><dd>{escape(cells.limits_text(result))}</dd>",
        f"<dt>machine</dt><dd>{escape(cells.machine_text(result))}</dd>",
        "</dl><ul>",
    ]
    parts += [f"<li>{escape(note)}</li>" for note in result.notes]
    parts.append("</ul>")
    if result.wall_s is not None:
        parts.append(
            f"<p>compare took {result.wall_s:.0f} s (wall clock), qdoctor {escape(result.qdoctor_version)}</p>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


FRAGMENT_CLASS = "qdoctor-compare"


def render_fragment(result: CompareResult) -> str:
    """The compare report as one ``<div>`` with its style scoped to it (no script, no network): Jupyter's view."""
    from qdoctor.report.render.html_report import scoped_css

    page = render(result)
    body = page.split("<body>", 1)[1].rsplit("</body>", 1)[0]
    scope = f"div.{FRAGMENT_CLASS}"
    return f'<div class="{FRAGMENT_CLASS}">\n<style>{scoped_css(STYLE, scope)}</style>\n{body.strip()}\n</div>'
