"""HTML report: one self-contained file (inline CSS and SVG; no script, no CDN, no network).

Summary, a chart of the time breakdown by category for the subject and the float baseline, the per-module table
(int8 or float, time) and the findings with their fix code and verified effects.
"""

from __future__ import annotations

import math
import re
from html import escape
from typing import Any

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.facts.location import display_path, first_line
from qdoctor.report.model import Report
from qdoctor.report.render.common import (
    CATEGORY_LABEL,
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
    fmt_sqnr,
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

CATEGORY_COLOR: dict[str, str] = {
    F.CAT_INT8: "#2e7d32",
    F.CAT_QDQ: "#ef6c00",
    F.CAT_FLOAT: "#1565c0",
    F.CAT_OBSERVER: "#8e24aa",
    F.CAT_OTHER: "#9e9e9e",
}
SEVERITY_COLOR = {Severity.ERROR: "#c62828", Severity.WARNING: "#b26a00", Severity.INFO: "#00838f"}

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0;
       background: #f6f8fa; }
main { max-width: 1040px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: #0d1117; color: #e6edf3; padding: 10px 12px; border-radius: 6px; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { background: #f0f3f6; font-weight: 600; }
tr > th:first-child { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.sub { color: #59636e; }
.counts { font-weight: 600; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 14px 16px; margin: 12px 0; }
.finding { border-left: 5px solid var(--sev); }
.finding h3 { margin: 0 0 6px; font-size: 15px; }
.sev { color: var(--sev); font-weight: 700; }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px; color: #fff; }
.int8 { background: #2e7d32; } .float { background: #1565c0; } .mixed { background: #ef6c00; } .none { background: #9e9e9e; }
.verified { color: #1a7f37; font-weight: 600; }
.unverified { color: #59636e; }
.bar { background: #1565c0; height: 8px; border-radius: 2px; display: inline-block; vertical-align: middle; }
.note { background: #ddf4ff; border: 1px solid #54aeff66; border-radius: 6px; padding: 6px 10px; margin: 6px 0; }
.crash { color: #c62828; font-weight: 600; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px;
            vertical-align: -1px; }
ul.plain { margin: 4px 0; padding-left: 18px; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


_CODE_SPAN = re.compile(r"`([^`]+)`")


def _prose(text: str) -> str:
    """Escaped text whose `code spans` (as rule messages write them) become <code>."""
    return _CODE_SPAN.sub(r"<code>\1</code>", _e(text))


def nice_step(span: float, ticks: int = 5) -> float:
    """A round axis step (1, 2, 2.5 or 5 times a power of ten) giving about ``ticks`` intervals over ``span``."""
    raw = span / ticks if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def breakdown_svg(report: Report, width: int = 960) -> str:
    """Two stacked bars on one millisecond axis: the subject and the float baseline, split by category."""
    facts = report.facts
    bars = [(f"subject ({facts.target.subject_name})", facts.profile), ("float baseline", facts.float_profile)]
    bars = [(label, profile) for label, profile in bars if profile is not None]
    if not bars:
        return ""
    label_w, right_pad, bar_h, gap, top = 190, 80, 34, 18, 10
    longest = max(profile.total_ms for _, profile in bars) or 1.0
    step = nice_step(longest)
    scale_max = step * math.ceil(longest / step)
    plot_w = width - label_w - right_pad
    axis_y = top + len(bars) * (bar_h + gap)
    height = axis_y + 28
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="time breakdown by category">'
    ]
    for i, (label, profile) in enumerate(bars):
        y = top + i * (bar_h + gap)
        parts.append(
            f'<text x="{label_w - 10}" y="{y + bar_h / 2 + 5:.1f}" text-anchor="end" font-size="13" '
            f'fill="#1f2328">{_e(label)}</text>'
        )
        x = float(label_w)
        for category in F.CATEGORIES:
            ms = profile.time_ms(category)
            if ms <= 0:
                continue
            w = ms / scale_max * plot_w
            share = profile.share(category)
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{bar_h}" '
                f'fill="{CATEGORY_COLOR[category]}"><title>{_e(CATEGORY_LABEL[category])}: {ms:.2f} ms '
                f"({share:.0%})</title></rect>"
            )
            if w >= 44:
                parts.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + bar_h / 2 + 4:.1f}" text-anchor="middle" font-size="11.5" '
                    f'fill="#fff">{share:.0%}</text>'
                )
            x += w
        parts.append(
            f'<text x="{x + 6:.1f}" y="{y + bar_h / 2 + 5:.1f}" font-size="12.5" fill="#1f2328">'
            f"{profile.total_ms:.2f} ms</text>"
        )
    parts.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" stroke="#8c959f"/>')
    intervals = round(scale_max / step)
    for k in range(intervals + 1):
        tick_ms = step * k
        tx = label_w + plot_w * k / intervals
        parts.append(f'<line x1="{tx:.1f}" y1="{axis_y}" x2="{tx:.1f}" y2="{axis_y + 5}" stroke="#8c959f"/>')
        parts.append(
            f'<text x="{tx:.1f}" y="{axis_y + 18}" text-anchor="middle" font-size="11" fill="#59636e">'
            f"{tick_ms:g} ms</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def error_svg(report: Report, width: int = 960) -> str:
    """Accumulated and isolated SQNR along the network, one point per layer, with the floor as a dashed line."""
    numerics = report.facts.numerics
    layers = numerics.layers if numerics is not None else []
    points = [
        (x.path, x.accumulated_sqnr_db, x.isolated_sqnr_db)
        for x in layers
        if x.accumulated_sqnr_db is not None or x.isolated_sqnr_db is not None
    ]
    if not points:
        return ""
    finite = [v for _, a, i in points for v in (a, i) if v is not None and math.isfinite(v)]
    top_db = max([F.SQNR_FLOOR_DB + 10, *finite])
    step = nice_step(top_db)
    top_db = step * math.ceil(top_db / step)
    left, right, top, plot_h = 56, 20, 12, 220
    plot_w = width - left - right
    height = top + plot_h + 34

    def xy(index: int, value: float) -> tuple[float, float]:
        x = left + (plot_w * index / max(len(points) - 1, 1) if len(points) > 1 else plot_w / 2)
        clipped = min(max(value if math.isfinite(value) else top_db, 0.0), top_db)
        return x, top + plot_h * (1 - clipped / top_db)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-label="SQNR per layer, accumulated and isolated">'
    ]
    for k in range(round(top_db / step) + 1):
        value = step * k
        _, y = xy(0, value)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eaeef2"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#59636e">{value:g} dB</text>'
        )
    _, floor_y = xy(0, F.SQNR_FLOOR_DB)
    parts.append(
        f'<line x1="{left}" y1="{floor_y:.1f}" x2="{left + plot_w}" y2="{floor_y:.1f}" stroke="#c62828" '
        f'stroke-dasharray="5 4"><title>floor {F.SQNR_FLOOR_DB:g} dB</title></line>'
    )
    accumulated = [(i, p[0], p[1]) for i, p in enumerate(points) if p[1] is not None]
    isolated = [(i, p[0], p[2]) for i, p in enumerate(points) if p[2] is not None]
    for label, color, series in (("accumulated", "#1565c0", accumulated), ("isolated", "#ef6c00", isolated)):
        coords = [(xy(i, value), name, value) for i, name, value in series if value is not None]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for (x, y), _, _ in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for (x, y), name, value in coords:
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"><title>{_e(name)}: {label} '
                f"{_e(fmt_sqnr(value))}</title></circle>"
            )
    for i, p in enumerate(points):
        if len(points) <= 24 or i % math.ceil(len(points) / 24) == 0:
            x, _ = xy(i, 0.0)
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="10.5" '
                f'fill="#59636e">{_e(p[0])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _error_sources(report: Report) -> str:
    chart = error_svg(report)
    if not chart:
        return ""
    rows, _ = error_rows(report, limit=None)
    head = "".join(f"<th>{_e(h)}</th>" for h in ERROR_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    legend = (
        '<div class="legend"><span><i style="background:#1565c0"></i>accumulated (int8 up to the layer)</span>'
        '<span><i style="background:#ef6c00"></i>isolated (the layer alone)</span>'
        f'<span><i style="background:#c62828"></i>floor {F.SQNR_FLOOR_DB:g} dB</span></div>'
    )
    return (
        f'<h2>Where the error comes from</h2><p class="sub">{_e(error_intro(report))}</p>'
        f'<div class="card">{chart}{legend}</div><table><tr>{head}</tr>{body}</table>'
    )


def _fallback(report: Report) -> str:
    fallback = prescription_of(report)[1]
    if fallback is None:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in FALLBACK_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in fallback_rows(fallback))
    out = (
        "<h2>Speed/accuracy: the worst layers kept in float</h2>"
        f'<p class="sub">Target: {_e(fallback.target)}.</p><table><tr>{head}</tr>{body}</table>'
    )
    chosen = fallback.chosen
    if chosen is not None and fallback.steps[chosen].code:
        out += f"<pre><code>{_e(fallback.steps[chosen].code)}</code></pre>"
    return out


def _treatment(report: Report) -> str:
    treatment = report.treatment
    if treatment is None:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in TREATMENT_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in treatment_rows(treatment))
    out = (
        "<h2>Treatment plan: diagnose, fix, examine the fixed model again</h2>"
        f'<table><tr>{head}</tr>{body}</table><p class="sub">{_e(treatment_outcome(treatment))}</p>'
    )
    if treatment.final_code:
        out += (
            f'<p class="sub">The composed recipe of every round:</p><pre><code>{_e(treatment.final_code)}</code></pre>'
        )
    return out


def _legend(report: Report) -> str:
    used = [row[0] for row in category_rows(report.facts)]
    items = "".join(f'<span><i style="background:{CATEGORY_COLOR[c]}"></i>{_e(CATEGORY_LABEL[c])}</span>' for c in used)
    return f'<div class="legend">{items}</div>'


def _summary(report: Report) -> str:
    facts = report.facts
    target = facts.target
    bench = facts.benchmark
    rows: list[tuple[str, str, str | None]] = []  # float cell None: the subject's cell spans both columns
    caveat = target.invented_inputs_caveat()
    if caveat is not None:
        rows.append(("inputs", f'<span class="crash">{_e(caveat)}</span>', None))
    untrained = weights_note(facts)
    if untrained is not None:
        rows.append(("weights", f'<span class="crash">{_e(untrained)}</span>', None))
    crash = facts.crash
    if crash is not None:
        where = f" in module <code>{_e(crash.module)}</code>" if crash.module else ""
        first = _e(first_line(crash.message)[:300])
        rows.append(("status", f'<span class="crash">crashed{where}: {_e(crash.type)}: {first}</span>', None))
    if bench is not None:
        subject = _e(fmt_ms(bench.subject)) if bench.subject else _e(bench.subject_error or "-")
        rows.append(("latency (median ± IQR)", subject, _e(fmt_ms(bench.float_baseline))))
        ratio = bench.speedup_ratio
        if ratio is not None:
            color = "#c62828" if ratio.clearly_below(1.0) else ("#1a7f37" if ratio.clearly_above(1.0) else "#9a6700")
            rows.append(("speed", f'<b style="color:{color}">{_e(ratio_speed_text(ratio))}</b>', "1.00x"))
        measured = measurement_text(report)
        if measured:
            rows.append(("measured", _e(measured), None))
    else:
        rows.append(("latency", _e(facts.unavailable.get("benchmark", "not measured")), "-"))
    fix_all = prescription_of(report)[0]
    if fix_all is not None and fix_all.headline:
        rows.append(("after all fixes", f'<span class="verified">{_e(fix_all.headline)}</span>', "-"))
    if facts.size is not None:
        rows.append(
            ("size (serialized)", _e(fmt_bytes(facts.size.subject_bytes)), _e(fmt_bytes(facts.size.float_bytes)))
        )
    if facts.numerics is not None:
        drop = facts.numerics.accuracy_drop_points
        if drop is not None:
            rows.append(("evaluate() drop", _e(f"{drop:.2f} points"), "-"))
        rows.append(("SQNR vs float", _e(sqnr_cell(facts)), "-"))
    float_head = f"float baseline <code>{_e(target.float_name)}</code>" if target.float_name else "float baseline"
    body = "".join(
        f'<tr><th>{k}</th><td class="num">{s}</td><td class="num">{f}</td></tr>'
        if f is not None
        else f'<tr><th>{k}</th><td colspan="2">{s}</td></tr>'
        for k, s, f in rows
    )
    return (
        f'<table><tr><th></th><th class="num">subject <code>{_e(target.subject_name)}</code></th>'
        f'<th class="num">{float_head}</th></tr>{body}</table>'
    )


def _breakdown_table(report: Report) -> str:
    def both(ms: float | None, share: float | None) -> str:
        return "-" if ms is None else f"{ms:.2f} ms ({share:.0%})"

    rows = "".join(
        f'<tr><td><i style="display:inline-block;width:10px;height:10px;background:{CATEGORY_COLOR[c]}"></i> '
        f'{_e(label)}</td><td class="num">{both(s_ms, s_sh)}</td><td class="num">{both(f_ms, f_sh)}</td></tr>'
        for c, label, s_ms, s_sh, f_ms, f_sh in category_rows(report.facts)
    )
    return (
        '<table><tr><th>category</th><th class="num">subject</th><th class="num">float baseline</th></tr>'
        f"{rows}</table>"
    )


def _badge(ran_on: str) -> str:
    css = {"int8": "int8", "float": "float", "-": "none"}.get(ran_on, "mixed")
    return f'<span class="badge {css}">{_e(ran_on)}</span>'


def _modules(report: Report) -> str:
    rows = module_rows(report.facts)
    if not rows:
        return '<p class="sub">No per-module data (the subject was not traced or profiled).</p>'
    longest = max((r.time_ms or 0.0 for r in rows), default=0.0) or 1.0
    body = "".join(
        f"<tr><td><code>{_e(r.path)}</code></td><td>{_e(r.type)}</td><td>{_e(r.kind)}</td><td>{_badge(r.ran_on)}</td>"
        f'<td class="num">{"-" if r.time_ms is None else f"{r.time_ms:.3f} ms"}</td>'
        f'<td class="num">{"-" if r.share is None else f"{r.share:.0%}"}</td>'
        f'<td style="width:160px"><span class="bar" style="width:{(r.time_ms or 0) / longest * 150:.0f}px"></span></td>'
        "</tr>"
        for r in rows
    )
    return (
        '<table><tr><th>module</th><th>type</th><th>kind</th><th>runs on</th><th class="num">time / forward</th>'
        f'<th class="num">share</th><th></th></tr>{body}</table>'
    )


def _finding(f: Finding, root: str | None) -> str:
    loc = f.location
    where = []
    if loc.module is not None:
        where.append(f"module <code>{_e(loc.module or '<root>')}</code>")
    if loc.file:
        path = display_path(loc.file, root)
        where.append(f"<code>{_e(path)}{f':{loc.line}' if loc.line else ''}</code>")
    parts = [
        f'<div class="card finding" style="--sev:{SEVERITY_COLOR[f.severity]}">',
        f'<h3><span class="sev">{_e(f.rule)}</span> {_e(f.name)} <span class="sev">[{_e(f.severity.value)}]</span>'
        + (f" <em>{_e(f.consequence_text)}</em>" if f.consequence_of else "")
        + "</h3>",
        f"<p>{_prose(f.message)}</p>",
    ]
    if where:
        parts.append(
            f'<p class="sub">at {", ".join(where)}' + (f": <code>{_e(loc.code)}</code>" if loc.code else "") + "</p>"
        )
    evidence = evidence_items(f.evidence)
    if evidence:
        items = "".join(f"<li><code>{_e(k)}</code> = {_e(v)}</li>" for k, v in evidence)
        parts.append(f'<details><summary>evidence</summary><ul class="plain">{items}</ul></details>')
    verified = verified_text(f.verified)
    if verified:
        css = "verified" if f.verified is not None and f.verified.after_ms is not None else "unverified"
        parts.append(f'<p class="{css}">{_e(verified)}</p>')
    if f.fix:
        parts.append(f"<p><b>Fix</b></p><pre><code>{_e(f.fix.rstrip())}</code></pre>")
    parts.append("</div>")
    return "".join(parts)


def render(report: Report, root: str | None = None, **_: Any) -> str:
    """``root``: file paths under it are shown relative to it (the CLI passes the working directory)."""
    title = target_title(report.facts.target, root)
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>qdoctor: {_e(title)}</title>",
        f"<style>{CSS}</style></head><body><main>",
    ]
    return "\n".join([*head, *_content(report, root), "</main></body></html>"]) + "\n"


FRAGMENT_CLASS = "qdoctor-report"
_CSS_RULE = re.compile(r"([^{}]+)\{([^}]*)\}")


def scoped_css(css: str, scope: str) -> str:
    """``css`` with every selector limited to the elements inside ``scope`` (``body``/``:root``/``main`` become the
    scope itself), so a report shown inside a page (a Jupyter output cell) does not restyle the page."""

    def selector(text: str) -> str:
        text = text.strip()
        if text in (":root", "body", "main"):
            return scope
        return f"{scope} {text}"

    return "\n".join(
        f"{', '.join(selector(s) for s in selectors.split(','))} {{{body}}}"
        for selectors, body in _CSS_RULE.findall(css)
    )


def render_fragment(report: Report, root: str | None = None) -> str:
    """The report as one ``<div>`` with its own scoped style (no script, no network): Jupyter's ``_repr_html_``."""
    scope = f"div.{FRAGMENT_CLASS}"
    style = scoped_css(CSS, scope) + f"\n{scope} {{ max-width: 1040px; padding: 12px 16px; overflow-x: auto; }}"
    return "\n".join([f'<div class="{FRAGMENT_CLASS}">', f"<style>{style}</style>", *_content(report, root), "</div>"])


def _content(report: Report, root: str | None) -> list[str]:
    facts = report.facts
    target = facts.target
    title = target_title(target, root)
    out = [
        f"<h1>qdoctor check: <code>{_e(title)}</code></h1>",
        f'<p class="sub"><span class="counts">{_e(finding_counts(report))}</span>'
        + (f" · qdoctor {_e(report.qdoctor_version)}" if report.qdoctor_version else "")
        + f" · subject <code>{_e(target.subject_name)}</code></p>",
        "<h2>Summary</h2>",
        _summary(report),
    ]
    out += [f'<div class="note">note: {_prose(n)}</div>' for n in report.notes]
    out.append("<h2>Where the time goes</h2>")
    chart = breakdown_svg(report)
    if chart:
        out += [
            '<p class="sub">torch.profiler self time per forward pass, by category. Shares and attribution; the '
            "latency above is the benchmark.</p>",
            f'<div class="card">{chart}{_legend(report)}</div>',
            _breakdown_table(report),
        ]
    else:
        reason = facts.unavailable.get("profile") or facts.unavailable.get("float_profile") or "not profiled"
        out.append(f'<p class="sub">No profile: {_e(reason)}</p>')
    out += ["<h2>Per module (subject)</h2>", _modules(report)]
    errors = _error_sources(report)
    if errors:
        out.append(errors)
    out.append(f"<h2>Findings ({len(report.findings)})</h2>")
    out += [_finding(f, root) for f in report.findings] or ['<p class="verified">No findings.</p>']
    fallback = _fallback(report)
    if fallback:
        out.append(fallback)
    treatment = _treatment(report)
    if treatment:
        out.append(treatment)
    skipped = report.skipped_here()
    if skipped:
        items = "".join(f"<li>{_e(s.rule)} {_e(s.name)}: {_e(s.reason)}</li>" for s in skipped)
        out.append(f'<h2>Skipped rules</h2><ul class="plain sub">{items}</ul>')
    env_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in environment_rows(facts.environment))
    out.append(f"<h2>Environment</h2><table>{env_rows}</table>")
    return out
