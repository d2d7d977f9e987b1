"""QD010: run with as many intra-op threads as the cores this process may use."""

from __future__ import annotations

from typing import Any

from torch import nn

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform


def _unchanged(model: nn.Module, batches: Any) -> nn.Module:
    return model  # the fix is the thread count the copy is run with


@transform("QD010", "set the thread count for this CPU")
def threads(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    recommended = int(finding.evidence.get("recommended_threads") or ctx.facts.environment.cpu_count)
    current = ctx.measured_threads
    if recommended == current:
        return CannotApply(f"qdoctor already measured with {current} intra-op thread(s), the recommended setting")
    return Fix(
        as_written={},
        fixed={"threads": recommended},
        on_subject=_unchanged,
        prefer_subject=True,  # re-benchmark the subject itself with the new setting
        subject_code=f"torch.set_num_threads({recommended})",
        details={"threads": recommended, "threads_before": current},
    )
