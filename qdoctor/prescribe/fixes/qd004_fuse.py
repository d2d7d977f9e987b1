"""QD004: fuse Conv/BN/ReLU (and Linear/ReLU) sequences before prepare."""

from __future__ import annotations

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import DYNAMIC, EAGER, FX, CannotApply, Fix, FixContext, transform


@transform("QD004", "fuse Conv/BN/ReLU sequences")
def fuse(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    if ctx.flow == FX:
        return CannotApply("prepare_fx fuses by itself: there is nothing to fuse by hand")
    if ctx.flow == DYNAMIC:
        return CannotApply("dynamic quantization keeps activations float: fusing changes nothing")
    if ctx.flow == EAGER and ctx.has_float_baseline and not ctx.fusion_groups:
        return CannotApply("no fusable sequence found in the execution order of the float baseline")
    return Fix(
        as_written={"fuse_activations": False, "fold_bn": False},
        fixed={"fuse_activations": True, "fold_bn": True},
        details={"groups": ctx.fusion_groups},
    )
