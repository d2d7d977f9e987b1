"""QD003: the quantized engine and qconfig for this CPU."""

from __future__ import annotations

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform

FAMILIES = {"x86": "x86/fbgemm", "fbgemm": "x86/fbgemm", "qnnpack": "qnnpack", "onednn": "onednn"}


def same_family(a: str, b: str) -> bool:
    return FAMILIES.get(a, a) == FAMILIES.get(b, b)


@transform("QD003", "switch to the engine and qconfig for this CPU")
def engine(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    recommended = str(finding.evidence.get("recommended_engine") or ctx.recommended_engine)
    if recommended not in ctx.facts.environment.supported_engines:
        return CannotApply(f"the recommended engine '{recommended}' is not in this torch build")
    if ctx.flow is None:
        return CannotApply(
            "weights are packed and fake-quant ranges chosen for the engine at prepare time: switching needs a "
            "rebuild from the float baseline, which would lose the QAT training"
            if ctx.qat
            else "this flow cannot be rebuilt for another engine"
        )
    base = ctx.base
    if recommended == base.engine and same_family(recommended, base.qconfig_engine):
        return CannotApply(f"the engine is already '{recommended}' with a qconfig of its family")
    return Fix(
        as_written={}, fixed={"engine": recommended, "qconfig_engine": recommended}, details={"engine": recommended}
    )
