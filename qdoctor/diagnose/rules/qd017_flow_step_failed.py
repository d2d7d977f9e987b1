"""QD017 flow-step-failed: a step of a quantization flow raised (torch.export, prepare_pt2e, convert_pt2e, torchao
quantize_, prepare_fx, or an import that a torch/torchao release moved), mapped from its message to the cause."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.flow_causes import FLOW_CAUSES, UNRECOGNIZED, failed_flow_steps
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts, SourceLocation


@rule(
    "QD017",
    "flow-step-failed",
    Severity.ERROR,
    "a step of a quantization flow raised (export, prepare_pt2e, convert_pt2e, quantize_, a moved import): cause and fix",
    needs=("flow",),
    owns=FLOW_CAUSES,
)
def flow_step_failed(facts: Facts) -> Iterator[Finding]:
    flow = facts.flow
    assert flow is not None
    version = f"torch {facts.environment.torch_version}" + (
        f", torchao {flow.torchao_version}" if flow.torchao_version else ""
    )
    for _crash, failure in failed_flow_steps(facts):
        source = (
            SourceLocation(failure.file, failure.line, failure.code or "") if failure.file and failure.line else None
        )
        known = failure.cause != UNRECOGNIZED
        message = (
            f"{failure.step} failed ({failure.error}): {failure.explanation}"
            if known
            else f"{failure.step} failed ({failure.error}): not a known quantization-flow failure; see its location."
        )
        yield flow_step_failed.finding(
            message,
            module=None,
            source=source,
            evidence={"step": failure.step, "cause": failure.cause, "error": failure.error, "versions": version},
            fix=failure.fix,
        )
