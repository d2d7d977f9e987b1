"""QD004: fuse Conv/BN/ReLU (and Linear/ReLU) sequences before prepare."""

from __future__ import annotations

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform


@transform("QD004", "fuse Conv/BN/ReLU sequences")
def fuse(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    if ctx.flow is not None and ctx.flow.static and ctx.flow.fuses_itself:
        return CannotApply(f"the {ctx.flow_name} flow fuses by itself (prepare_fx): there is nothing to fuse by hand")
    if ctx.flow is not None and not ctx.flow.static:
        return CannotApply("dynamic quantization keeps activations float: fusing changes nothing")
    if ctx.flow is not None and not ctx.flow.fuses_itself and ctx.has_float_baseline and not ctx.fusion_groups:
        return CannotApply("no fusable sequence found in the execution order of the float baseline")
    return Fix(
        as_written={"fuse_activations": False, "fold_bn": False},
        fixed={"fuse_activations": True, "fold_bn": True},
        details={"groups": ctx.fusion_groups},
    )
