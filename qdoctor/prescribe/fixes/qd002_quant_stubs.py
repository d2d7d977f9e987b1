"""QD002: QuantStub at the input, DeQuantStub at the output (eager mode)."""

from __future__ import annotations

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform


@transform("QD002", "insert QuantStub/DeQuantStub")
def quant_stubs(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    # the flow that rebuilds it, else (a model qdoctor cannot rebuild, not QAT) the flow that made it
    placing = ctx.flow if ctx.flow is not None or ctx.qat else ctx.subject_flow
    if placing is not None and placing.places_stubs:
        return CannotApply(f"the {ctx.flow_name} flow places quantize/dequantize itself: there are no stubs to insert")
    # QuantWrapper puts the stubs around the whole model; a missing DeQuantStub in the middle of forward() needs
    # an edit of forward() that no rebuild can make (the verification then shows the copy still raises).
    return Fix(as_written={"stubs": False}, fixed={"stubs": True}, repairs_crash=True)
