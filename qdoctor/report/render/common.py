"""What every reporter says the same way: numbers as text, the per-module table, verified effects, file paths.

Pure functions of the report; the reporters decide the markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qdoctor import facts as F
from qdoctor.diagnose.findings import Severity
from qdoctor.facts.location import display_path
from qdoctor.facts.prescription import FallbackLadder, FixAll, SavedFixed, Treatment, Verified
from qdoctor.report.model import Report

CATEGORY_LABEL: dict[str, str] = {
    F.CAT_INT8: "int8 kernels",
    F.CAT_QDQ: "quantize/dequantize",
    F.CAT_FLOAT: "float compute",
    F.CAT_OBSERVER: "observers/fake-quant",
    F.CAT_OTHER: "other",
}


def fmt_ms(t: Any) -> str:
    if t is None:
        return "-"
    noisy = " (noisy)" if t.noisy else ""
    busy = " (contended)" if getattr(t, "contended", False) else ""
    return f"{t.median_ms:.2f} ms ± {t.iqr_ms:.2f} (IQR, {t.runs} runs){noisy}{busy}"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


STAND_IN_MARK = "†"  # next to SQNR and evaluate() measured with offline stand-ins (random weights, fake data)
STAND_IN_TEXT = "measured with stand-ins: valid for speed, not accuracy"


UNTRAINED_TEXT = "untrained weights: accuracy not judged"


def weights_note(facts: Any) -> str | None:
    """The header line of a model whose weights are untrained (qdoctor.facts.weights), else None."""
    weights = getattr(facts, "weights", None)
    return weights.note() if weights is not None else None


def sqnr_cell(facts: Any) -> str:
    """SQNR vs float, saying when it comes from stand-ins (random weights, random data) or untrained weights."""
    text = fmt_sqnr(facts.numerics.sqnr_db)
    if facts.target.substitutions:
        return f"{text} ({STAND_IN_TEXT})"
    return f"{text} ({UNTRAINED_TEXT})" if weights_note(facts) else text


def fmt_sqnr(value: float | None) -> str:
    if value is None:
        return "-"
    return "identical" if math.isinf(value) else f"{value:.1f} dB"


def speed_text(speedup: float | None) -> str:
    if speedup is None:
        return "-"
    if speedup >= 1:
        return f"{speedup:.2f}x faster than float"
    return f"{1 / speedup:.2f}x SLOWER than float"


def ratio_speed_text(ratio: F.Ratio | None, than: str = "float") -> str:
    """A speedup with its interval, judged whenever the interval clears 1.0 (busy machine or not): "2.20x faster
    than float (2.10-2.31)", or "within noise of float, leaning slower: 0.98x (0.91-1.06)"."""
    if ratio is None:
        return "-"
    busy = ", machine busy" if ratio.contended else ""
    interval = f"({ratio.low:.2f}-{ratio.high:.2f}{busy})"
    if ratio.clearly_above(1.0):
        return f"{ratio.value:.2f}x faster than {than} {interval}"
    if ratio.clearly_below(1.0):
        return f"{1 / ratio.value:.2f}x SLOWER than {than} ({ratio.value:.2f}x, {interval[1:-1]})"
    return f"within noise of {than}, {ratio.leaning(1.0, 'slower', 'faster')}: {ratio.value:.2f}x {interval}"


def measurement_text(report: Report) -> str | None:
    """How the timings were taken: "measured on 1 thread: 1 of 2 cores was busy" (None when nothing was timed)."""
    measurement = report.facts.measurement
    return measurement.text() if measurement is not None else None


def finding_counts(report: Report) -> str:
    """ "3 findings: 1 error, 2 warning" or "no findings"; findings that are another's consequence are not counted as
    faults: "1 finding: 1 error (+1 consequence of it)"."""
    if not report.findings:
        return "no findings"
    faults = [f for f in report.findings if not f.consequence_of]
    counts = {s: sum(1 for f in faults if f.severity == s) for s in Severity}
    detail = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    consequences = len(report.findings) - len(faults)
    more = f" (+{consequences} consequence{'s' if consequences != 1 else ''} of {'them' if len(faults) > 1 else 'it'})"
    return f"{len(faults)} finding{'s' if len(faults) != 1 else ''}: {detail}" + (more if consequences else "")


def verified_text(verified: Verified | None) -> str | None:
    """The measured effect of a fix (filled by the verification stage) as one line, "verified: ..." or
    "not verified: <reason>"; None when the fix was not tried."""
    if verified is None:
        return None
    after = verified.after_ms
    if after is None:
        return f"not verified: {verified.reason or 'no measurement'}"
    before = verified.before_ms
    line = (
        f"verified: {before:.2f} ms -> {after:.2f} ms" if before is not None else f"verified: crashed -> {after:.2f} ms"
    )
    ratio = verified.speedup
    if ratio is not None:
        effect = verified.effect or ""
        judged = f", {effect}" if effect.startswith("within noise") else ""
        busy = ", machine busy" if ratio.contended else ""
        span = f"{ratio.low:.2f}-{ratio.high:.2f}"
        line += f" ({ratio.value:.2f}x, {span}{busy}{judged})"
    before_sqnr, after_sqnr = verified.before_sqnr_db, verified.after_sqnr_db
    if after_sqnr is not None:
        shown = (
            f"{fmt_sqnr(before_sqnr)} -> {fmt_sqnr(after_sqnr)}" if before_sqnr is not None else fmt_sqnr(after_sqnr)
        )
        line += f", SQNR vs float {shown}"
    if verified.on_top_of:
        line += f" (on top of {', '.join(verified.on_top_of)})"
    return line


def evidence_items(evidence: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in evidence.items() if v not in (None, [], {}, "")]


def target_title(target: Any, root: str | None) -> str:
    """What a report is about: the script (relative to ``root``), else what was passed. Objects checked in-process
    (qdoctor.check_model) keep their ``<in-process ...>`` name: their file is only where their class is defined."""
    if target.spec.startswith("<"):
        return str(target.spec)
    return display_path(target.file, root) if target.file else str(target.spec)


@dataclass
class ModuleRow:
    path: str
    type: str
    kind: str
    ran_on: str  # "int8", "float", "float -> int8", "int8 -> float" or "-" when the trace did not see it run
    time_ms: float | None  # per forward, inclusive, from torch.profiler
    share: float | None  # of the profiled total


def _numeric_kind(infos: list[Any]) -> str | None:
    if any(t.quantized for t in infos):
        return "int8"
    if any(t.dtype.startswith("torch.float") or t.dtype.startswith("torch.bfloat") for t in infos):
        return "float"
    return None


def _ran_on(events: list[Any]) -> str:
    inputs = _numeric_kind([t for e in events for t in e.inputs])
    outputs = _numeric_kind([t for e in events for t in e.outputs])
    if inputs and outputs and inputs != outputs:
        return f"{inputs} -> {outputs}"
    return inputs or outputs or "-"


def module_rows(facts: Any) -> list[ModuleRow]:
    """Leaf modules of the subject: what they ran on (trace) and how long they took (profile), slowest first.

    A module is listed when the profile timed it or the trace saw it run; modules that never ran are left out.
    """
    events_by_module: dict[str, list[Any]] = {}
    for event in facts.trace.events if facts.trace else []:
        if event.kind == "module":
            events_by_module.setdefault(event.name, []).append(event)
        elif event.module:
            # a torch function called inside a module's forward (e.g. a quantized Linear run as `linear`)
            events_by_module.setdefault(event.module, []).append(event)
    info = {m.path: m for m in facts.modules or []}
    profile = facts.profile
    timed = {m.path: m for m in profile.modules} if profile else {}
    total = profile.total_ms if profile and profile.total_ms > 0 else None
    rows = []
    for path in list(timed) + [p for p in events_by_module if p not in timed]:
        module_time = timed.get(path)
        module = info.get(path)
        if module is not None and module.kind == F.CONTAINER:
            continue
        rows.append(
            ModuleRow(
                path=path,
                type=module_time.type if module_time and module_time.type else (module.type if module else "-"),
                kind=module.kind if module else (module_time.kind if module_time else "-"),
                ran_on=_ran_on(events_by_module.get(path, [])),
                time_ms=module_time.total_ms if module_time else None,
                share=module_time.total_ms / total if module_time and total else None,
            )
        )
    rows.sort(key=lambda r: (-(r.time_ms if r.time_ms is not None else -1.0), r.path))
    return rows


CategoryRow = tuple[str, str, float | None, float | None, float | None, float | None]


def category_rows(facts: Any) -> list[CategoryRow]:
    """(category, label, subject ms, subject share, float ms, float share) for the categories either model spent
    time in."""
    subject, baseline = facts.profile, facts.float_profile
    rows: list[CategoryRow] = []
    for category in F.CATEGORIES:
        s_ms = subject.time_ms(category) if subject else None
        f_ms = baseline.time_ms(category) if baseline else None
        if not s_ms and not f_ms:
            continue
        rows.append(
            (
                category,
                CATEGORY_LABEL[category],
                s_ms,
                subject.share(category) if subject else None,
                f_ms,
                baseline.share(category) if baseline else None,
            )
        )
    return rows


def environment_rows(env: Any) -> list[tuple[str, str]]:
    threads_env = ", ".join(f"{k}={v}" for k, v in sorted(env.thread_env.items())) or "none set"
    return [
        ("torch", env.torch_version),
        ("python", env.python_version),
        ("platform", env.platform),
        ("CPU", f"{env.cpu_model} ({env.machine}), {env.cpu_count} logical cores"),
        ("CPU ISA", ", ".join(env.cpu_isa) or "-"),
        ("torch CPU capability", env.cpu_capability),
        ("quantized engine", f"{env.quantized_engine} (supported: {', '.join(env.supported_engines)})"),
        ("threads", f"{env.num_threads} intra-op, {env.num_interop_threads} inter-op; env: {threads_env}"),
    ]


def trace_lines(facts: Any, trace_dir: str) -> list[str]:
    """What --trace-dir wrote (or why not), and how to open it: for stderr."""
    lines = [f"profiler trace ({role}): {path}" for role, path in facts.trace_files.items()]
    lines += [
        f"no profiler trace ({part.removeprefix('trace_')}): {reason}"
        for part, reason in facts.unavailable.items()
        if part.startswith("trace_")
    ]
    if facts.trace_files:
        lines.append(
            f"view them with: tensorboard --logdir {trace_dir}  (the files also open in Perfetto and chrome://tracing)"
        )
    return lines


# ---- where the error comes from (per-layer numerics) and the speed/accuracy table

ERROR_HEADER = ["layer", "type", "accumulated", "isolated", "weights", "levels used"]
MAX_ERROR_ROWS = 12  # terminal and Markdown show this many layers (the worst by isolated SQNR, in network order)


def error_intro(report: Report) -> str:
    """One line over the per-layer table: what it measures and on what."""
    numerics = report.facts.numerics
    if numerics is None:
        return ""
    on = numerics.layers_note or "the example inputs"
    text = (
        "SQNR against the float twin: accumulated = the int8 model up to that layer, isolated = the float input fed "
        f"to that layer alone (its own error); measured on {on}."
    )
    if weights_note(report.facts):
        text += f" ({UNTRAINED_TEXT}: these numbers describe a random draw.)"
    drop = numerics.accuracy_drop_points
    if drop is not None:
        text = (
            f"evaluate(): {numerics.metric_float:.4g} float, {numerics.metric_subject:.4g} int8 ({drop:+.1f} points lost). "
            + text
        )
    return text


def error_rows(report: Report, limit: int | None = MAX_ERROR_ROWS) -> tuple[list[list[str]], int]:
    """Rows of the per-layer table (network order) and how many layers were left out by ``limit``."""
    numerics = report.facts.numerics
    layers = numerics.layers if numerics is not None else []
    shown = layers
    if limit is not None and len(layers) > limit:
        worst = sorted(layers, key=lambda x: x.isolated_sqnr_db if x.isolated_sqnr_db is not None else math.inf)
        keep = {id(x) for x in worst[:limit]}
        shown = [x for x in layers if id(x) in keep]
    rows = []
    for x in shown:
        weights = fmt_sqnr(x.weight_sqnr_db)
        if x.weight_qscheme and x.weight_sqnr_db is not None:
            weights += " per-tensor" if "per_tensor" in x.weight_qscheme else " per-channel"
        levels = "-" if x.levels_used is None else f"{x.levels_used:.0f}/256"
        rows.append([x.path, x.type, fmt_sqnr(x.accumulated_sqnr_db), fmt_sqnr(x.isolated_sqnr_db), weights, levels])
    return rows, len(layers) - len(shown)


FALLBACK_HEADER = ["in float", "SQNR", "accuracy drop", "latency", "meets target"]


def fallback_rows(fallback: FallbackLadder) -> list[list[str]]:
    """Rows of the speed/accuracy table: the int8 model as it is, then each step of the float fallback."""
    rows = [
        [
            "none (as it is)",
            fmt_sqnr(fallback.before_sqnr_db),
            "-",
            f"{fallback.before_ms:.3f} ms" if fallback.before_ms is not None else "-",
            "no",
        ]
    ]
    for i, step in enumerate(fallback.steps):
        drop = step.drop_points
        rows.append(
            [
                ", ".join(step.float_layers),
                fmt_sqnr(step.sqnr_db) if not step.error else f"failed: {step.error}",
                f"{drop:.2f} points" if drop is not None else "-",
                f"{step.ms:.3f} ms" if step.ms is not None else "-",
                "yes (smallest)" if i == fallback.chosen else "no",
            ]
        )
    if fallback.float_ms is not None:
        rows.append(["everything (the float model)", "identical", "0", f"{fallback.float_ms:.3f} ms", "yes"])
    return rows


def prescription_of(report: Report) -> tuple[FixAll | None, FallbackLadder | None, SavedFixed | None]:
    """The report's fix-all, speed/accuracy table (when it has steps) and saved model, each None when absent."""
    found = report.prescription
    if found is None:
        return None, None, None
    fallback = found.fallback if found.fallback is not None and found.fallback.steps else None
    return found.fix_all, fallback, found.saved


TREATMENT_HEADER = ["round", "examined", "found", "fixes applied", "after the fixes vs fp32", "SQNR after"]


def treatment_rows(treatment: Treatment) -> list[list[str]]:
    """The treatment plan as table rows: per round, the model examined, the causes found on it, the fixes applied
    together, and the fixed model's measured speed against fp32 (interval) and SQNR."""
    rows = []
    for r in treatment.rounds:
        fix = r.fix_all
        speed = "-"
        if fix is not None and fix.vs_float is not None:
            speed = f"{fix.vs_float.text()} {fix.vs_float_verdict or ''}".strip()
        elif fix is not None and fix.after_error:
            speed = f"raised: {fix.after_error}"
        sqnr = f"{fix.after_sqnr_db:.1f} dB" if fix is not None and fix.after_sqnr_db is not None else "-"
        found = ", ".join(dict.fromkeys(f.rule for f in r.findings)) or "nothing"
        applied = ", ".join(fix.fixes) if fix is not None and fix.applied and fix.fixes else "-"
        rows.append([str(r.number), r.examined, found, applied, speed, sqnr])
    return rows


def treatment_outcome(treatment: Treatment) -> str:
    """One sentence: why the loop stopped and what remains."""
    last = treatment.rounds[-1]
    text = f"after {len(treatment.rounds)} round(s): {last.stopped or 'done'}"
    left = [r for r in treatment.remains if r != last.stopped]
    if left:
        text += "; left out: " + "; ".join(left)
    return text
