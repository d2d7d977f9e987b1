"""QD001 uncalibrated-observers: static int8 converted (or about to be) without running calibration data."""

from __future__ import annotations

import math
from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose import static_steps as static
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import (
    first_compute,
    float_variable,
    inside_fake_quant,
    is_graph_module,
    observer_owner,
    subject_variable,
)
from qdoctor.diagnose.registry import from_text, rule
from qdoctor.facts import Facts, ModuleInfo
from qdoctor.facts import report as R

# What torch's observers warn when calculate_qparams() runs on an observer that never saw a tensor (observer.py).
DEFAULT_QPARAMS_WARNING = "must run observer before calling calculate_qparams"
# The scale and zero point that warning says it returns instead.
DEFAULT_SCALE, DEFAULT_ZERO_POINT = 1.0, 0


# Modules whose output scale/zero_point come from their activation observer at convert(). FloatFunctional/QFunctional
# are left out: their methods, not forward(), run, so the trace cannot tell an unused one (torchvision MobileNetV2's
# skip_add in blocks without a residual, never calibrated because never called) from a used one.
CALIBRATED_KINDS = (F.QUANTIZED, F.QUANT_STUB)


def has_default_qparams(info: ModuleInfo) -> bool:
    """An int8 module (or QuantStub) whose activation scale/zero_point are the uncalibrated observer's defaults."""
    return info.kind in CALIBRATED_KINDS and info.scale == DEFAULT_SCALE and info.zero_point == DEFAULT_ZERO_POINT


def _ran(facts: Facts) -> set[str] | None:
    """Modules the traced forward called; None when the trace is missing or stopped early (a crash)."""
    trace = facts.trace
    if trace is None or trace.crash is not None:
        return None
    return {e.module for e in trace.events if e.kind == "module"}


def never_observed(info: ModuleInfo) -> bool:
    """An observer (or a fake-quant's observer) whose running min/max are still +inf/-inf: it never saw data."""
    return (
        info.kind in (F.OBSERVER, F.FAKE_QUANT)
        and info.observed_min is not None
        and info.observed_max is not None
        and math.isinf(info.observed_min)
        and math.isinf(info.observed_max)
    )


def calibration_fix(facts: Facts, already_prepared: bool = False) -> str:
    """Calibrate, then convert: with the script's calibration_data() when it has one."""
    subject, float_name = subject_variable(facts), float_variable(facts)
    if facts.target.has_calibration_data:
        loop = "    for batch in calibration_data():\n"
    else:
        loop = "    for batch in calibration_batches:  # ~100-500 representative inputs, e.g. validation images\n"
    fx = is_graph_module(facts)
    if already_prepared:
        prepare, prepared = "", subject
    elif fx:
        prepare, prepared = f"prepared = prepare_fx({float_name}.eval(), qconfig_mapping, example_inputs)\n", "prepared"
    else:
        prepare = f"prepared = torch.ao.quantization.prepare({float_name})  # the qconfig'd float model, as before\n"
        prepared = "prepared"
    convert = f"convert_fx({prepared})" if fx else f"torch.ao.quantization.convert({prepared})"
    return (
        ("from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx\n" if fx else "")
        + prepare
        + "with torch.no_grad():  # calibration: the observers record each activation's range\n"
        + loop
        + f"        {prepared}(*batch)  # each batch a tuple of example inputs\n"
        + f"{subject} = {convert}"
    )


@rule(
    "QD001",
    "uncalibrated-observers",
    Severity.ERROR,
    "static int8 converted without calibration: activation scale/zero_point are the observer defaults (1.0, 0)",
    needs=("modules",),
)
def uncalibrated_observers(facts: Facts) -> Iterator[Finding]:
    modules = facts.modules or []
    ran = _ran(facts)
    # A module that never runs (an unused auxiliary head) is never calibrated, harmlessly.
    used = [m for m in modules if ran is None or m.path in ran]
    defaults = [m for m in used if has_default_qparams(m)]
    with_qparams = [m for m in used if m.kind in CALIBRATED_KINDS and m.scale is not None]
    idle = [m for m in used if never_observed(m) and not inside_fake_quant(facts, m)]
    warned = next((w for w in facts.target.warnings if DEFAULT_QPARAMS_WARNING in w), None)
    numerics = facts.numerics
    sqnr = numerics.sqnr_db if numerics is not None else None
    sqnr_text = (
        f" Its output against the float model: SQNR {sqnr:.1f} dB (a calibrated int8 CNN gives 20-40 dB)."
        if sqnr is not None and math.isfinite(sqnr)
        else ""
    )

    if defaults:
        target = first_compute(defaults, facts)
        count = len(defaults)
        share = f"all {count}" if count == len(with_qparams) else f"{count} of {len(with_qparams)}"
        yield uncalibrated_observers.finding(
            f"{share} int8 modules carry the uncalibrated observer defaults (scale {DEFAULT_SCALE}, zero_point "
            f"{DEFAULT_ZERO_POINT}), starting at `{target.path}` ({target.type}): the model was converted without "
            "running calibration data through the prepared model, so every activation is rounded to whole numbers "
            f"and clipped to 0..255; its outputs are garbage.{sqnr_text}",
            module=target.path,
            source=target.source,
            evidence={
                "modules_with_default_qparams": [m.path for m in defaults][:20],
                "quantized_modules": len(with_qparams),
                "torch_warning": warned,
                "sqnr_db": round(sqnr, 2) if sqnr is not None and math.isfinite(sqnr) else None,
                "sqnr_unavailable": facts.unavailable.get("numerics") if sqnr is None else None,
            },
            fix=calibration_fix(facts),
        )
    elif idle:
        owners = [observer_owner(facts, m) for m in idle]
        target = first_compute(owners, facts)
        not_converted_yet = not any(m.kind in (F.QUANTIZED,) for m in modules)
        yield uncalibrated_observers.finding(
            f"{len(idle)} observer(s) never saw data (running min/max still +inf/-inf), starting at `{target.path}`: "
            "no calibration batch ran through the prepared model"
            + (
                ", so convert() would give every such layer scale 1.0 and zero_point 0: garbage outputs."
                if not_converted_yet
                else "."
            )
            + " Run calibration data through it before convert().",
            module=target.path,
            source=target.source,
            evidence={"observers_never_run": [m.path for m in idle][:20], "torch_warning": warned},
            fix=calibration_fix(facts, already_prepared=not_converted_yet),
            severity=Severity.WARNING if not_converted_yet else None,
        )
    elif warned is not None and not with_qparams:
        # The script converted an observer that never ran, and the model checked has no int8 module to look at (it
        # is another model of the script): point at the warning itself. When int8 modules are there and calibrated,
        # the warning came from an observer that is never used (MobileNetV2's skip_add without a residual).
        yield uncalibrated_observers.finding(
            "torch warned that an observer was asked for its scale/zero_point before it saw any data "
            f'("{DEFAULT_QPARAMS_WARNING}"): somewhere in the script a model was converted without calibration.'
            + sqnr_text,
            module=None,
            evidence={"torch_warning": warned},
            fix=calibration_fix(facts),
            severity=Severity.WARNING,
        )


@from_text("QD001")
def convert_right_after_prepare(facts: Facts) -> Iterator[Finding]:
    """The report's text converts what it prepared with no forward between: nothing calibrated the observers."""
    for convert in static.steps(facts, R.CONVERT):
        prepares = [p for p in static.before(facts, convert, R.PREPARE) if convert.model in static.names_of(p)]
        if not prepares:
            continue
        prepare = prepares[-1]
        if not (static.unverified(convert, facts) or static.unverified(prepare, facts)):
            continue
        names = static.names_of(prepare) | static.names_of(convert)
        used = [
            s
            for s in static.steps(facts, R.USE)
            if prepare.line < s.line < convert.line and s.model in names and s.in_function == convert.in_function
        ]
        if used:
            continue
        yield uncalibrated_observers.finding(
            f"`{convert.code}` (line {convert.line}) converts the model `{prepare.code}` prepared at line "
            f"{prepare.line} with nothing run through it between: its observers saw no data, so every activation "
            "gets the default scale 1.0 and zero point 0 (static: read, not run).",
            source=static.where(convert, facts),
            evidence=static.evidence(convert, prepared_at=prepare.line),
            fix=f"with torch.no_grad():\n    for batch in calibration_batches:  # representative inputs\n"
            f"        {prepare.result or prepare.model}(*batch)\n{convert.code}",
            severity=Severity.WARNING,
        )
