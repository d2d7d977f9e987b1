"""QD008: keep the dynamically quantized layers that do not pay in float (all of them: the float model)."""

from __future__ import annotations

from qdoctor.diagnose.findings import Finding
from qdoctor.diagnose.twins import float_twins
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform


@transform("QD008", "keep the int8 layers that do not pay in float")
def keep_float(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    if ctx.flow is None or ctx.flow.static:
        return CannotApply(
            "qdoctor verifies this fix on dynamically quantized models; for static int8, ship the float model or "
            "keep the layers named in the finding in float, then check again"
        )
    layers = sorted(
        {twin for path in finding.evidence.get("layers_not_paying", []) for twin in float_twins(ctx.facts, path)[:1]}
    )
    if not layers:
        return CannotApply("no float twin of the layers that do not pay in the float baseline")
    return Fix(as_written={}, fixed={"float_layers": tuple(layers)}, details={"float_layers": layers})
