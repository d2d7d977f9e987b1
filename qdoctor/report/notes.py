"""The report's notes, in words: what the check found about the target that is not a finding (how the subject, the
float baseline and the inputs were chosen, what the script raised, the stand-ins it used, a check that stopped early).

The runner hands the facts (and what happened to the check); this module words them, so the orchestrator holds no
prose. Paths are printed as every report prints them (qdoctor.facts.location.display_path).
"""

from __future__ import annotations

from typing import Any

from qdoctor.facts import Facts
from qdoctor.facts.location import display_path
from qdoctor.report.deploy import deploy_notes
from qdoctor.report.language_model import language_model_note
from qdoctor.report.render.common import STAND_IN_MARK

# The subject of a script that died before it defined any model (Target.subject_name, which every format prints).
NO_MODEL_DEFINED = "(none: the script stopped before defining a model)"

SPEED_NOT_ACCURACY = (
    "numbers measured with stand-ins are valid for speed (same architecture, same shapes), not for accuracy: "
    "SQNR and evaluate() come from random weights and random data"
)


def check_notes(facts: Facts, flow_failed: bool) -> list[str]:
    """The notes of a check. ``flow_failed``: a quantization flow step raised (the model stayed float, and that
    failure is diagnosed: the report does not call the model "not quantized")."""
    notes = []
    target = facts.target
    notes.extend(target.selection)
    if target.inputs_inferred:
        notes.append(f"inputs: {target.inputs_inferred}")
    if target.float_derived:
        notes.append(f"float baseline: {target.float_derived}")
    if target.float_name is None:
        notes.append(
            "no float baseline found (define `float_model` or `build_float_model()`): speedup and SQNR not measured"
        )
    notes.extend(script_notes(target))
    if target.stopped_lines:
        lines = ", ".join(str(line) for line in target.stopped_lines)
        notes.append(
            f"stopped the statement{'s' if len(target.stopped_lines) > 1 else ''} at line {lines} after "
            "its time budget (the script's own timing loop; qdoctor measures speed itself); the next ones still ran"
        )
    if target.breakpoints_skipped:
        lines = ", ".join(str(line) for line in target.breakpoints_skipped)
        notes.append(
            f"skipped the debugger breakpoint{'s' if len(target.breakpoints_skipped) > 1 else ''} at line {lines} "
            "(no terminal to debug in): the script went on as after pdb's `continue`"
        )
    if target.script_errors:
        notes.append(_script_errors_note(target))
    elif target.load_crash is not None:
        c = target.load_crash
        where = f" at {display_path(c.file) if c.file else '?'}:{c.line}" if c.line else ""
        stdin = " (it read stdin, which qdoctor leaves empty)" if c.type == "EOFError" else ""
        notes.append(f"the script raised {c.type}{where}{stdin}; the globals defined before it were used")
    if facts.flow is not None:
        notes.extend(f"{facts.flow.flow}: {note}" for note in facts.flow.notes)
    language_model = language_model_note(facts)
    if language_model is not None:
        notes.append(language_model)
    notes.extend(deploy_notes(facts))
    if facts.modules is not None and not facts.is_quantized and not flow_failed:
        notes.append(
            "the model is not quantized (no quantized modules, observers, fake-quant or qconfig): nothing to "
            "diagnose. To choose a quantization recipe, run `qdoctor compare` on this file."
        )
        ignored = ignored_qconfig_warnings(target.warnings)
        if ignored:
            notes.append(f"while the script ran, torch warned that it ignored a qconfig: {ignored[0]}")
    return notes


def ignored_qconfig_warnings(warnings: list[str]) -> list[str]:
    """The script's warnings that say a quantization step ignored (or skipped) the qconfig it was given: on a model
    left float they are why (prepare_fx ignores a qconfig a fixed-qparams op such as tanh or sigmoid cannot take)."""
    found = []
    for warning in warnings:
        text = warning.strip().splitlines()[0] if warning.strip() else ""
        lowered = text.lower()
        if "qconfig" in lowered and ("ignor" in lowered or "skipp" in lowered):
            found.append(text[:300])
    return found


def _script_errors_note(target: Any) -> str:
    errors = [c for c in target.script_errors if c.follows_from is None]
    followers = [c for c in target.script_errors if c.follows_from is not None]
    lines = ", ".join(
        f"{c.line} {c.type}" + (": it read stdin, which qdoctor leaves empty" if c.type == "EOFError" else "")
        for c in errors[:12]
    ) + (", ..." if len(errors) > 12 else "")
    text = (
        f"the script ran statement by statement: {len(errors)} raised (line{'s' if len(errors) > 1 else ''} "
        f"{lines}), each reported; the statements after them still ran (--stop-on-error stops at the first)"
    )
    if followers:
        text += "; " + ", ".join(
            f"line {c.line} then raised {c.type} (a name line {c.follows_from} never bound)" for c in followers[:8]
        )
    return text


_HOW_RUN = {
    "markdown": "its fenced Python blocks",
    "rst": "its code blocks (reStructuredText `.. code::` and `::` blocks)",
    "notebook": "its code cells",
    "html": "its <pre><code> blocks",
}


def script_notes(target: Any) -> list[str]:
    """What the report ran of a bug report, and the offline stand-ins used (shared with `qdoctor compare`)."""
    notes = []
    text = target.report_text
    if text is not None:
        from qdoctor.load.report_text import describe_ranges

        source = "standard input" if text.stdin else "the report"
        how = _HOW_RUN.get(text.kind, "its runs of lines that parse as Python")
        if text.ran:
            notes.append(f"ran {how}: lines {describe_ranges(text.ran)} of {source}")
        else:
            notes.append(f"no Python in {source} to run (read: the errors it quotes)")
        notes.extend(f"not run: {skipped}" for skipped in text.skipped)
        notes.extend(text.reindented)
    notes.extend(f"not run, left out: {gap}" for gap in target.left_out)
    for sub in target.substitutions:
        where = f" (line {sub.line})" if sub.line else ""
        notes.append(f"stand-in{where}: {sub.requested} -> {sub.instead}")
    if target.substitutions:
        notes.append(f"{STAND_IN_MARK} {SPEED_NOT_ACCURACY} (--no-stand-ins runs the script as written)")
    return notes


def stopped_in_flow_step_notes(facts: Facts, model_not_run: str | None) -> list[str]:
    """The notes of a script that died in a quantization flow step: before it defined any model, or
    (``model_not_run``: why) after, leaving a model qdoctor did not run."""
    crash = facts.target.load_crash
    where = f" at line {crash.line}" if crash is not None and crash.line else ""
    if model_not_run is not None:
        return [
            f"the script stopped{where} in a quantization step; the model it left was not run ({model_not_run}): "
            "only the failed step is diagnosed"
        ]
    return [f"the script stopped{where} before it defined any model: only the failed step is diagnosed"]


def unfinished_note(reason: str) -> str:
    """The first note of a report whose check died part-way (qdoctor.run.dead_worker)."""
    return f"the check did not finish: {reason}. This report holds what was gathered before."


def measured_alone_note(jobs: int | None, paused: bool) -> str:
    """A worker of a parallel run (qdoctor.run.batch) that timed while the others waited."""
    return (
        f"timings: measured alone; the other workers of this parallel run (-j {jobs}) were "
        + ("paused" if paused else "kept from measuring")
        + " while this one profiled and timed, so they did not disturb its measurements"
    )
