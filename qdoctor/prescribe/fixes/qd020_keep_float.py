"""QD020: keep the error hotspots in float (eager: qconfig None between a DeQuantStub and a QuantStub; FX:
qconfig_mapping.set_module_name(name, None))."""

from __future__ import annotations

from qdoctor.diagnose.findings import Finding
from qdoctor.diagnose.locate import float_path
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform


def worst_first(ctx: FixContext, finding: Finding) -> list[str] | None:
    """The order of the speed/accuracy table (float paths, worst layer first), None when a float fallback is not
    the remedy (the calibration ranges, or a float baseline in train mode, cause the error)."""
    if finding.evidence.get("cause") in ("calibration-range", "train-mode-baseline"):
        return None
    return [float_path(ctx.facts, p) for p in finding.evidence.get("worst_first") or []] or None


@transform("QD020", "keep the error hotspots in float", ladder=worst_first)
def keep_float(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    cause = finding.evidence.get("cause")
    if cause == "calibration-range":
        return CannotApply("the error comes from the calibration ranges: QD022's fix, not a float fallback")
    if cause == "train-mode-baseline":
        return CannotApply("the float baseline runs in train mode: the per-layer numbers compare against noise")
    spots = list(finding.evidence.get("hotspots") or [])
    if not spots:
        return CannotApply("no single layer stands out: keeping one in float would not bring the error down")
    if not ctx.rebuilds_static("float_layers"):
        return CannotApply(f"qdoctor keeps layers in float when it rebuilds eager or FX models, not {ctx.flow_name}")
    paths = tuple(float_path(ctx.facts, p) for p in spots)
    return Fix(as_written={"float_layers": ()}, fixed={"float_layers": paths}, details={"float_layers": list(paths)})
