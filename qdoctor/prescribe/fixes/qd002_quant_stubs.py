"""QD002: QuantStub at the input, DeQuantStub at the output (eager mode)."""

from __future__ import annotations

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import DYNAMIC, FX, OTHER, CannotApply, Fix, FixContext, transform


@transform("QD002", "insert QuantStub/DeQuantStub")
def quant_stubs(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    if ctx.flow in (FX, DYNAMIC, OTHER):
        return CannotApply(f"the {ctx.flow} flow places quantize/dequantize itself: there are no stubs to insert")
    # QuantWrapper puts the stubs around the whole model; a missing DeQuantStub in the middle of forward() needs
    # an edit of forward() that no rebuild can make (the verification then shows the copy still raises).
    return Fix(as_written={"stubs": False}, fixed={"stubs": True}, repairs_crash=True)
