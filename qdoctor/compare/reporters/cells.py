"""The words and numbers every compare format shows, computed once: table rows, the machine line, the verdicts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qdoctor.compare.result import FAILED, NOT_JUDGED, OK, Candidate, CompareResult, limit_text
from qdoctor.facts.deploy import LoweredProgram
from qdoctor.report.render.common import STAND_IN_MARK, fmt_sqnr
from qdoctor.report.render.terminal_report import fmt_bytes

PHASES = {
    "build": "building",
    "run": "running",
    "time": "timing",
    "evaluate": "running evaluate()",
    "size": "measuring size",
}
COLUMNS = ("recipe", "latency", "speedup", "size", "smaller", "SQNR", "top-1 agree", "evaluate()", "build", "verdict")


@dataclass
class Row:
    candidate: Candidate
    cells: dict[str, str]
    recommended: bool


def latency_text(c: Candidate) -> str:
    t = c.latency
    if t is None:
        return "-"
    return f"{t.median_ms:.2f} ±{t.iqr_ms:.2f} ms" + ("*" if t.noisy or t.contended else "")


def ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def speedup_text(c: Candidate) -> str:
    """ "2.10x (1.95-2.24)": the speedup over fp32 with its interval ("machine busy" when measured under contention)."""
    r = c.speedup_interval
    if r is None or c.recipe == "fp32":
        return ratio_text(c.speedup)
    return r.text()


def top1_text(c: Candidate) -> str:
    if c.top1_agreement is None:
        return "-"
    return f"{c.top1_agreement:.0%} of {c.top1_samples}"


def metric_text(c: Candidate) -> str:
    if c.metric is None:
        return "-"
    if c.metric_drop is None or c.recipe == "fp32":
        return f"{c.metric:.4g}"
    change = -c.metric_drop if abs(c.metric_drop) >= 0.005 else 0.0
    return f"{c.metric:.4g} {change:+.2f}"


def build_text(c: Candidate) -> str:
    if c.build_s is None:
        return "-"
    text = f"{c.build_s:.1f} s"
    if c.first_run_compiles and c.first_run_s is not None:
        text += f" + {c.first_run_s:.0f} s compile"
    return text


def verdict(c: Candidate, judged: bool = True) -> str:
    if c.status != OK:
        return c.status + (f" ({c.phase})" if c.phase else "")
    if not judged and c.recipe != "fp32":
        return "not judged"
    if c.within_limit is None:
        return "unknown"
    return "ok" if c.within_limit else "too lossy"


def rows(result: CompareResult) -> list[Row]:
    chosen = result.recommendation.recipe
    # SQNR and evaluate() from offline stand-ins (random weights, fake data) are valid for speed, not accuracy
    mark = f" {STAND_IN_MARK}" if result.substitutions or not result.accuracy_judged else ""
    out = []
    for c in result.by_speed():
        cells = {
            "recipe": c.recipe,
            "latency": latency_text(c),
            "speedup": speedup_text(c),
            "size": fmt_bytes(c.size_bytes),
            "smaller": ratio_text(c.size_ratio),
            "SQNR": fmt_sqnr(c.sqnr_db) + mark,
            "top-1 agree": top1_text(c),
            "evaluate()": metric_text(c) + mark,
            "build": build_text(c),
            "verdict": verdict(c, result.accuracy_judged),
        }
        out.append(Row(c, cells, c.recipe == chosen))
    return out


def columns(result: CompareResult) -> list[str]:
    """Columns with something to show: evaluate() only when the script has it, top-1 only for class scores."""
    shown = list(COLUMNS)
    if result.metric_name is None:
        shown.remove("evaluate()")
    if all(c.top1_agreement is None for c in result.candidates):
        shown.remove("top-1 agree")
    return shown


def problems(result: CompareResult) -> list[tuple[str, str]]:
    """(recipe, why) for every recipe that was skipped or failed."""
    out = []
    for c in result.candidates:
        if c.status == FAILED:
            out.append((c.recipe, f"failed while {PHASES.get(c.phase or 'build', c.phase)}: {c.reason}"))
        elif c.status != OK:
            out.append((c.recipe, f"skipped: {c.reason}"))
    return out


def machine_text(result: CompareResult) -> str:
    env = result.environment
    isa = "/".join(env.cpu_isa) or env.cpu_capability
    return (
        f"{env.cpu_model or env.machine}, {env.cpu_count} cores, {env.machine} {isa}; torch {env.torch_version}, "
        f"{env.num_threads} threads; engines {', '.join(env.supported_engines)}"
    )


def limits_text(result: CompareResult) -> str:
    limits = result.limits
    text = limit_text(limits, result.metric_name is not None) if result.accuracy_judged else NOT_JUDGED
    return f"{text}; recommended only if at least {limits.min_speedup:g}x faster than fp32"


def table_title(result: CompareResult) -> str:
    """The title of the speed/accuracy table, labelled when accuracy is not judged (untrained weights)."""
    if result.accuracy_judged:
        return "recipes, fastest first"
    return f"recipes, fastest first; {NOT_JUDGED}: SQNR {STAND_IN_MARK} describes a random draw"


def inputs_text(result: CompareResult) -> str:
    return ", ".join("x".join(str(d) for d in shape) for shape in result.input_shapes) or "-"


def chart_value(c: Candidate, kind: str) -> float | None:
    """The number a chart bar shows: latency ms, size MB, or accuracy (evaluate() when given, else SQNR dB)."""
    if kind == "latency":
        return c.latency.median_ms if c.latency else None
    if kind == "size":
        return c.size_bytes / 1e6 if c.size_bytes else None
    if c.metric is not None:
        return c.metric
    if c.sqnr_db is None:
        return None
    return c.sqnr_db if math.isfinite(c.sqnr_db) else None


def _program_text(program: LoweredProgram) -> str:
    t = program.latency
    latency = "not timed" if t is None else f"{t.median_ms:.3f} ±{t.iqr_ms:.3f} ms" + ("*" if t.noisy else "")
    left = ", ".join(f"{op.op} x{op.not_delegated}" for op in program.left_out())
    return (
        f"{latency}, .pte {fmt_bytes(program.program_bytes)}, {program.partitions} delegated partition"
        f"{'s' if program.partitions != 1 else ''} ({program.delegated_nodes} ops delegated"
        f"{'; not delegated: ' + left if left else ''})"
    )


def deploy_lines(result: CompareResult) -> list[str]:
    """--deploy: the float program, then each recipe's int8 program in the runtime (or why it was not lowered)."""
    deploy = result.deploy
    if deploy is None:
        return []
    if deploy.float_program is None:
        return [deploy.target, f"nothing lowered: {deploy.unavailable}"]
    lines = [f"{deploy.target} ({deploy.runtime})", f"float program: {_program_text(deploy.float_program)}"]
    for entry in deploy.recipes:
        if entry.program is None:
            lines.append(f"{entry.recipe}: not lowered: {entry.reason}")
            continue
        speedup = f", {entry.speedup.text()} the float program's speed" if entry.speedup is not None else ""
        lines.append(f"{entry.recipe}: {_program_text(entry.program)}{speedup}")
    return lines
