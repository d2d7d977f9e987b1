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
from qdoctor.facts.location import first_line
from qdoctor.report.model import Report
from qdoctor.report.render.common import (
    CATEGORY_LABEL,
    category_rows,
    display_path,
    environment_rows,
    evidence_items,
    finding_counts,
    fmt_bytes,
    fmt_ms,
    module_rows,
    speed_text,
    sqnr_cell,
    verified_text,
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


def _legend(report: Report) -> str:
    used = [row[0] for row in category_rows(report.facts)]
    items = "".join(f'<span><i style="background:{CATEGORY_COLOR[c]}"></i>{_e(CATEGORY_LABEL[c])}</span>' for c in used)
    return f'<div class="legend">{items}</div>'


def _summary(report: Report) -> str:
    facts = report.facts
    target = facts.target
    bench = facts.benchmark
    rows: list[tuple[str, str, str | None]] = []  # float cell None: the subject's cell spans both columns
    crash = facts.crash
    if crash is not None:
        where = f" in module <code>{_e(crash.module)}</code>" if crash.module else ""
        first = _e(first_line(crash.message)[:300])
        rows.append(("status", f'<span class="crash">crashed{where}: {_e(crash.type)}: {first}</span>', None))
    if bench is not None:
        subject = _e(fmt_ms(bench.subject)) if bench.subject else _e(bench.subject_error or "-")
        rows.append(("latency (median ± IQR)", subject, _e(fmt_ms(bench.float_baseline))))
        if bench.speedup is not None:
            color = "#1a7f37" if bench.speedup >= 1 else "#c62828"
            rows.append(("speed", f'<b style="color:{color}">{_e(speed_text(bench.speedup))}</b>', "1.00x"))
    else:
        rows.append(("latency", _e(facts.unavailable.get("benchmark", "not measured")), "-"))
    fix_all = report.extras.get("fix_all")
    if fix_all and fix_all.get("headline"):
        rows.append(("after all fixes", f'<span class="verified">{_e(fix_all["headline"])}</span>', "-"))
    if facts.size is not None:
        rows.append(
            ("size (serialized)", _e(fmt_bytes(facts.size.subject_bytes)), _e(fmt_bytes(facts.size.float_bytes)))
        )
    if facts.numerics is not None:
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
        f'<h3><span class="sev">{_e(f.rule)}</span> {_e(f.name)} <span class="sev">[{_e(f.severity.value)}]</span></h3>',
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
        css = "verified" if f.verified and f.verified.get("after_ms") is not None else "unverified"
        parts.append(f'<p class="{css}">{_e(verified)}</p>')
    if f.fix:
        parts.append(f"<p><b>Fix</b></p><pre><code>{_e(f.fix.rstrip())}</code></pre>")
    parts.append("</div>")
    return "".join(parts)


def render(report: Report, root: str | None = None, **_: Any) -> str:
    """``root``: file paths under it are shown relative to it (the CLI passes the working directory)."""
    facts = report.facts
    target = facts.target
    title = display_path(target.file, root) or target.spec
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>qdoctor: {_e(title)}</title>",
        f"<style>{CSS}</style></head><body><main>",
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
    out.append(f"<h2>Findings ({len(report.findings)})</h2>")
    out += [_finding(f, root) for f in report.findings] or ['<p class="verified">No findings.</p>']
    if report.skipped:
        items = "".join(f"<li>{_e(s.rule)} {_e(s.name)}: {_e(s.reason)}</li>" for s in report.skipped)
        out.append(f'<h2>Skipped rules</h2><ul class="plain sub">{items}</ul>')
    env_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in environment_rows(facts.environment))
    out.append(f"<h2>Environment</h2><table>{env_rows}</table>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"
