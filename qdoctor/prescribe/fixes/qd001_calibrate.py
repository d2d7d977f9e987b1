"""QD001: calibrate between prepare and convert."""

from __future__ import annotations

from typing import Any

from torch import nn

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, SubjectFixError, transform


def _calibrate_subject(model: nn.Module, batches: Any) -> nn.Module:
    from qdoctor.flows import calibrate
    from qdoctor.introspect.kinds import classify

    if not any(classify(m) in ("observer", "fake_quant") for m in model.modules()):
        raise SubjectFixError(
            "the subject is already converted, so its observers are gone: calibrating needs the float baseline to "
            "rebuild from (define `float_model` or `build_float_model()`)"
        )
    calibrate(model, batches)
    return model


@transform("QD001", "calibrate before convert")
def calibrate(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    if ctx.flow is not None and not ctx.flow.static:
        return CannotApply("dynamic quantization measures activation ranges at run time: there is nothing to calibrate")
    return Fix(
        as_written={"calibrate": False},
        fixed={"calibrate": True},
        on_subject=_calibrate_subject,
        subject_code="with torch.no_grad():\n    for batch in calibration_batches:\n        {subject}(*batch)",
        details={"calibration": ctx.calibration},
    )
