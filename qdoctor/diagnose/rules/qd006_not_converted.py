"""QD006 not-converted: observers or fake-quant modules left in the model that is run."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose import static_steps as static
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.flow_causes import failed_flow_steps
from qdoctor.diagnose.locate import (
    first_compute,
    inside_fake_quant,
    is_graph_module,
    observer_owner,
    subject_label,
    subject_variable,
)
from qdoctor.diagnose.registry import from_text, rule
from qdoctor.facts import Facts, FlowKind
from qdoctor.facts import report as R


def prepared_by(facts: Facts) -> FlowKind | None:
    """The flow that prepared the subject (its kind, when that flow has a prepare step), None when unknown."""
    kind = facts.flow.kind if facts.flow is not None else None
    return kind if kind is not None and kind.prepare_step else None


def how_prepared(facts: Facts, is_qat: bool) -> str:
    kind = prepared_by(facts)
    if kind is None:
        return "prepared by a flow qdoctor did not identify"
    return kind.prepare_qat_step if is_qat else kind.prepare_step


def convert_fix(facts: Facts, is_qat: bool) -> str:
    """The flow's own convert step (its FlowKind's code), for the subject's variable."""
    name = subject_variable(facts)
    kind = prepared_by(facts)
    if kind is None:
        return f"# convert `{name}` with the convert step of the flow that prepared it, before running it"
    return (kind.convert_qat_code if is_qat else kind.convert_code).format(model=name)


@rule(
    "QD006",
    "not-converted",
    Severity.ERROR,
    "observers or fake-quant left in the model: prepared (or QAT-trained) but never converted to int8",
    needs=("modules",),
    explains_slowdown=True,
)
def not_converted(facts: Facts) -> Iterator[Finding]:
    observers = [m for m in facts.modules_of_kind(F.OBSERVER) if not inside_fake_quant(facts, m)]
    fake_quants = facts.modules_of_kind(F.FAKE_QUANT)
    qat = facts.modules_of_kind(F.QAT)
    if not (observers or fake_quants or qat):
        return
    if any(failure.step.startswith("convert") for _, failure in failed_flow_steps(facts)):
        return  # the script did convert, and convert raised: the rule that owns that failure says why (QD017)
    is_qat = bool(qat or fake_quants)
    how = how_prepared(facts, is_qat)
    left = (qat or fake_quants) if is_qat else observers
    # Point at the first layer that computes (a conv, not the QuantStub's observer). FX observers sit at the root
    # next to the modules they watch, so there the first float layer that runs stands for them.
    owners = [observer_owner(facts, m) for m in left]
    candidates = owners + [m for m in facts.modules or [] if m.kind in (F.FLOAT, F.QAT) and m.path]
    owner = first_compute(candidates, facts) if is_graph_module(facts) else first_compute(owners, facts)
    evidence: dict = {
        "flow": how,
        "observers": len(observers),
        "fake_quant": len(fake_quants),
        "qat_modules": len(qat),
        "examples": [m.path for m in (qat or fake_quants or observers)[:5]],
    }
    if facts.profile is not None:
        evidence["observer_time_share"] = round(facts.profile.share(F.CAT_OBSERVER), 3)
        evidence["float_compute_share"] = round(facts.profile.share(F.CAT_FLOAT), 3)
    bench = facts.benchmark
    slower = ""
    if bench and bench.subject and bench.float_baseline:
        evidence["subject_ms"] = round(bench.subject.median_ms, 3)
        evidence["float_ms"] = round(bench.float_baseline.median_ms, 3)
        slower = f" It runs in {evidence['subject_ms']:.2f} ms vs {evidence['float_ms']:.2f} ms for the float model."
    what = "QAT fake-quant" if is_qat else "observer"
    count = len(fake_quants) + len(qat) if is_qat else len(observers)
    name = subject_label(facts)
    yield not_converted.finding(
        f"{count} {what} module(s) left in `{name}` ({how}): it was {'trained with QAT' if is_qat else 'prepared'} "
        f"but never converted, so every forward runs float compute plus {what}s and nothing runs in int8.{slower}",
        module=owner.path,
        source=owner.source,
        evidence=evidence,
        fix=convert_fix(facts, is_qat),
    )


@from_text("QD006")
def prepared_never_converted(facts: Facts) -> Iterator[Finding]:
    """The report's text prepares a model and never converts it."""
    for prepare in static.steps(facts, R.PREPARE):
        names = static.names_of(prepare)
        converted = [c for c in static.steps(facts, R.CONVERT) if c.line > prepare.line and c.model in names]
        if converted or not static.unverified(prepare, facts):
            continue
        yield not_converted.finding(
            f"`{prepare.code}` (line {prepare.line}) prepares the model, and nothing in the report converts it: a "
            "prepared model runs float kernels with observers or fake-quant around them, slower than float "
            "(static: read, not run).",
            source=static.where(prepare, facts),
            evidence=static.evidence(prepare),
            fix=f"quantized = {'convert_pt2e' if prepare.detail.endswith('pt2e') else 'convert_fx' if prepare.detail.endswith('fx') else 'torch.ao.quantization.convert'}({prepare.result or prepare.model})  # after calibration",
            severity=Severity.WARNING,
        )
