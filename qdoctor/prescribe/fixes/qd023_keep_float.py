"""QD023: keep the int8 layers that run slower than their float twins in float."""

from __future__ import annotations

from qdoctor.diagnose.findings import Finding
from qdoctor.diagnose.rules.qd023_slow_int8_layer import slow_layers
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform


@transform("QD023", "keep the slow int8 layers in float")
def keep_float(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    if not ctx.rebuilds_static("float_layers"):
        return CannotApply(
            f"qdoctor keeps layers in float when it rebuilds eager or FX models, not {ctx.flow_name} ones"
        )
    layers = sorted({layer.twins[0] for layer in slow_layers(ctx.facts)})
    if not layers:  # the finding came from facts this transform cannot see (e.g. built by hand)
        layers = [str(t) for t in finding.evidence.get("float_twins", [])[:1]]
    if not layers:
        return CannotApply("no float twin of the slow layer in the float baseline")
    return Fix(as_written={}, fixed={"float_layers": tuple(layers)}, details={"float_layers": layers})
