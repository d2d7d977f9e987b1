"""QD006 not-converted: observers or fake-quant modules left in the model that is run."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose import static_steps as static
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import (
    first_compute,
    inside_fake_quant,
    is_graph_module,
    observer_owner,
    subject_label,
    subject_variable,
)
from qdoctor.diagnose.registry import from_text, rule
from qdoctor.facts import Facts
from qdoctor.facts import report as R

# The ways a model ends up prepared but not converted, and the call that finishes each.
EAGER, EAGER_QAT, FX, FX_QAT = "eager prepare", "eager QAT (prepare_qat)", "FX prepare_fx", "FX QAT (prepare_qat_fx)"


def flow(facts: Facts) -> str:
    is_qat = bool(facts.modules_of_kind(F.FAKE_QUANT, F.QAT))
    if is_graph_module(facts):
        return FX_QAT if is_qat else FX
    return EAGER_QAT if is_qat else EAGER


def convert_fix(facts: Facts, how: str) -> str:
    name = subject_variable(facts)
    if facts.flow is not None and facts.flow.flow == "pt2e":
        return (
            "from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e\n"
            f"{name} = convert_pt2e({name})  # after calibrating the prepared model\n"
            "# then lower it: torch._inductor.config.freezing = True; model = torch.compile(model)  (QD012)"
        )
    if how in (FX, FX_QAT):
        return (
            "from torch.ao.quantization.quantize_fx import convert_fx\n"
            + (f"{name}.eval()  # after QAT training\n" if how == FX_QAT else "")
            + f"{name} = convert_fx({name})  # after calibrating the prepared GraphModule"
        )
    if how == EAGER_QAT:
        return (
            f"{name}.eval()  # after QAT training\n"
            f"{name}.apply(torch.ao.quantization.disable_observer)  # freeze the learned scales\n"
            f"{name} = torch.ao.quantization.convert({name})"
        )
    return f"{name} = torch.ao.quantization.convert({name}.eval())  # after calibration"


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
    how = flow(facts)
    is_qat = how in (EAGER_QAT, FX_QAT)
    left = (qat or fake_quants) if is_qat else observers
    # Point at the first layer that computes (a conv, not the QuantStub's observer). FX observers sit at the root
    # next to the modules they watch, so there the first float layer that runs stands for them.
    owners = [observer_owner(facts, m) for m in left]
    candidates = owners + [m for m in facts.modules or [] if m.kind in (F.FLOAT, F.QAT) and m.path]
    owner = first_compute(candidates, facts) if how in (FX, FX_QAT) else first_compute(owners, facts)
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
        fix=convert_fix(facts, how),
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
