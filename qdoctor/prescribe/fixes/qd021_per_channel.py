"""QD021: per-channel int8 weights (the x86/fbgemm default qconfig) instead of per-tensor."""

from __future__ import annotations

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform


@transform("QD021", "per-channel weights")
def per_channel(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    if not ctx.rebuilds_static("weight_per_channel"):
        return CannotApply(f"qdoctor rebuilds eager or FX models with per-channel weights, not {ctx.flow_name}")
    engine = ctx.base.engine if ctx.base.engine in ("x86", "fbgemm") else "x86"
    if ctx.recommended_engine == "qnnpack":
        # qnnpack takes per-channel weights too; its activations stay its own
        return Fix(as_written={"weight_per_channel": False}, fixed={"weight_per_channel": True})
    return Fix(
        as_written={"weight_per_channel": False},
        fixed={"weight_per_channel": None, "qconfig_engine": engine},
        details={"qconfig": f"get_default_qconfig('{engine}')"},
    )
