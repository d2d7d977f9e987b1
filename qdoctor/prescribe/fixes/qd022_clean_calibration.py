"""QD022: re-calibrate without the calibration rows whose values set the ranges."""

from __future__ import annotations

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform


@transform("QD022", "re-calibrate without the outlier rows")
def clean_calibration(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    rows = tuple(sorted((int(b), int(r)) for b, r in finding.evidence.get("outlier_rows") or []))
    if not rows:
        return CannotApply(
            "no calibration row stands out (or the script defines no calibration_data()): clean the data or clip to "
            "a percentile (HistogramObserver) as the fix shows"
        )
    if not ctx.rebuilds_static("calibration_skip"):
        return CannotApply(f"qdoctor re-calibrates eager or FX models it rebuilds, not {ctx.flow_name}")
    return Fix(
        as_written={"calibration_skip": ()},
        fixed={"calibration_skip": rows},
        details={"calibration_rows_left_out": [list(r) for r in rows]},
    )
