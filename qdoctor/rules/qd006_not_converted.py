"""QD006 not-converted: observers or fake-quant modules left in the model that is run."""

from __future__ import annotations

from typing import Iterator

from qdoctor import facts as F
from qdoctor.facts import Facts
from qdoctor.registry import rule
from qdoctor.report import Finding, Severity


def _owner(path: str) -> str:
    """The module an observer belongs to: "features.0.activation_post_process" -> "features.0"."""
    head, _, last = path.rpartition(".")
    return head if last in ("activation_post_process", "weight_fake_quant") else path


@rule(
    "QD006",
    "not-converted",
    Severity.ERROR,
    "observers or fake-quant left in the model: prepared (or QAT-trained) but never converted to int8",
    needs=("modules",),
)
def not_converted(facts: Facts) -> Iterator[Finding]:
    observers = facts.modules_of_kind(F.OBSERVER)
    fake_quants = facts.modules_of_kind(F.FAKE_QUANT)
    qat = facts.modules_of_kind(F.QAT)
    if not (observers or fake_quants or qat):
        return
    name = facts.target.subject_name.removesuffix("()")
    is_fx = any(m.path == "" and m.type == "GraphModule" for m in facts.modules or [])
    is_qat = bool(fake_quants or qat)
    owners = [facts.module(_owner(m.path)) or m for m in (qat or fake_quants or observers)]
    # Point at the first layer that computes (a conv, not the QuantStub's observer).
    owner = next((o for o in owners if o.kind in (F.FLOAT, F.QAT)), owners[0])
    evidence: dict = {
        "observers": len(observers),
        "fake_quant": len(fake_quants),
        "qat_modules": len(qat),
        "examples": [m.path for m in (qat or fake_quants or observers)[:5]],
    }
    if facts.profile is not None:
        evidence["observer_time_share"] = round(facts.profile.share(F.CAT_OBSERVER), 3)
        evidence["float_compute_share"] = round(facts.profile.share(F.CAT_FLOAT), 3)
    bench = facts.benchmark
    if bench and bench.subject and bench.float_baseline:
        evidence["subject_ms"] = round(bench.subject.median_ms, 3)
        evidence["float_ms"] = round(bench.float_baseline.median_ms, 3)
    if is_fx:
        fix = (
            "from torch.ao.quantization.quantize_fx import convert_fx\n"
            f"{name} = convert_fx({name})  # after calibrating the prepared GraphModule"
        )
    elif is_qat:
        fix = (
            f"{name}.eval()\n"
            f"{name}.apply(torch.ao.quantization.disable_observer)\n"
            f"{name} = torch.ao.quantization.convert({name})"
        )
    else:
        fix = f"{name} = torch.ao.quantization.convert({name}.eval())  # after calibration"
    what = "QAT fake-quant" if is_qat else "observer"
    count = len(fake_quants) + len(qat) if is_qat else len(observers)
    slower = ""
    if "subject_ms" in evidence:
        slower = f" It runs in {evidence['subject_ms']:.2f} ms vs {evidence['float_ms']:.2f} ms for the float model."
    yield not_converted.finding(
        f"{count} {what} module(s) left in `{name}`: it was {'trained with QAT' if is_qat else 'prepared'} but never "
        f"converted, so every forward runs float compute plus {what}s and nothing runs in int8.{slower}",
        module=owner.path,
        source=owner.source,
        evidence=evidence,
        fix=fix,
    )
