"""QD009: eval() before fuse/prepare and at inference, so BatchNorm folds into the conv and Dropout is off."""

from __future__ import annotations

from typing import Any

from torch import nn

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform


def _eval(model: nn.Module, batches: Any) -> nn.Module:
    return model.eval()


@transform("QD009", "eval() and fold BatchNorm")
def eval_fold_bn(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    if ctx.flow is not None and "eval_mode" not in ctx.flow.plan_fields:
        return CannotApply(
            f"qdoctor rebuilds {ctx.flow_name} models in eval mode only, so it cannot show this effect: call .eval() "
            "before prepare and before running the model"
        )
    return Fix(
        as_written={"eval_mode": False, "fold_bn": False},
        fixed={"eval_mode": True, "fold_bn": True},
        on_subject=_eval,
        subject_code="{subject}.eval()",
    )
