"""QD025 not-delegated-op: an op of the int8 ExecuTorch program that XNNPACK did not take: it runs in ExecuTorch's
portable fp32 kernel, with quantize/dequantize around it, and splits the program into several delegated partitions
(``qdoctor check --deploy executorch-xnnpack``)."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts, SourceLocation
from qdoctor.facts.deploy import FLOAT, INT8, Deployment, OpDelegation

QDQ_PREFIX = "quantized_decomposed_"
# Supported equivalents of ops XNNPACK does not take, where one is known (ExecuTorch 1.5 XNNPACK partitioner).
EQUIVALENTS = {
    "aten_grid_sampler_2d_default": (
        "for a resize, F.interpolate(..., mode='bilinear') (delegated);\n#    a data-dependent grid has no XNNPACK "
        "equivalent"
    ),
}
FIX = """\
# 1. a supported equivalent:
#    {equivalent}
# 2. or take it out of the exported model: do it in pre- or post-processing
# 3. or keep the layers around it in float (still delegated, no int8 <-> fp32 at its edges):
#    quantizer.set_module_name("<layer before it>", None)  # XNNPACKQuantizer
# 4. or accept it: {cost}"""


def _split(partitions: int) -> str:
    if partitions > 1:
        return f", and the program is split into {partitions} delegated partitions"
    return f", outside the program's {'one delegated partition' if partitions else 'delegates (there are none)'}"


def _timing_words(deploy: Deployment) -> str:
    int8, float_ = deploy.subject(), deploy.program(FLOAT)
    if int8 is None or int8.latency is None:
        return ""
    words = f" The {'int8 ' if int8.role == INT8 else ''}program runs in {int8.latency.median_ms:.2f} ms"
    if float_ is not None and float_.latency is not None:
        words += f" vs {float_.latency.median_ms:.2f} ms for the float program"
    return words + f" in {deploy.runtime}."


def _cost(deploy: Deployment, op: OpDelegation) -> tuple[str, float | None]:
    measured = deploy.op_cost.get(op.op)
    if measured is None and deploy.from_pte:
        return (
            "not measured (the pip ExecuTorch runtime gives no per-op profile, and the op was not timed alone: "
            "timing off, or it could not be rebuilt from the arguments the .pte records)",
            None,
        )
    if measured is None:
        return (
            "not measured (the pip ExecuTorch runtime gives no per-op profile, and the op was not timed alone: "
            "timing off, or it does not export by itself)",
            None,
        )
    total = measured.median_ms * op.not_delegated
    return f"about {total:.3f} ms per call (the op timed alone in the runtime on random inputs of its shapes)", total


@rule(
    "QD025",
    "not-delegated-op",
    Severity.WARNING,
    "an op of the int8 ExecuTorch program that XNNPACK does not take runs in a portable fp32 kernel between "
    "delegated partitions",
    needs=("deploy",),
    explains_slowdown=True,
)
def not_delegated_op(facts: Facts) -> Iterator[Finding]:
    deploy = facts.deploy
    assert deploy is not None
    program = deploy.subject()
    if program is None or not program.partitions:
        return  # nothing delegated at all: the program was not lowered (QD012), not one op left out
    for op in program.left_out():
        if deploy.quantizer_made_for is not None and op.op.startswith(QDQ_PREFIX):
            continue  # another backend's quantize/dequantize: the quantizer is the cause (QD018)
        cost_words, cost_ms = _cost(deploy, op)
        line = op.sources[0] if op.sources else None
        source = SourceLocation(facts.target.file, line.line, line.code) if line and facts.target.file else None
        where = f" (line {source.line}: `{source.code}`)" if source is not None and source.code else ""
        evidence: dict = {
            "op": op.op,
            "not_delegated": op.not_delegated,
            "delegated": op.delegated,
            "partitions": program.partitions,
            "output_elements": op.elements,
            "op_ms": round(cost_ms, 4) if cost_ms is not None else None,
            "lines": [s.line for s in op.sources],
        }
        float_program = deploy.program(FLOAT)
        if program.latency is not None:
            evidence[f"{'int8_' if program.role == INT8 else ''}program_ms"] = round(program.latency.median_ms, 4)
        if float_program is not None and float_program.latency is not None:
            evidence["float_program_ms"] = round(float_program.latency.median_ms, 4)
        count = f"{op.not_delegated} node{'s' if op.not_delegated > 1 else ''}"
        if deploy.from_pte:  # no stack traces, and what the delegates compute in is not read
            evidence["from_pte"] = True
            how = (
                f"runs in ExecuTorch's portable kernel{_split(program.partitions)}. Where it comes from in the "
                "model's code is unknown: a .pte holds no stack traces (check the model.py that exported it with "
                "--deploy executorch-xnnpack for its line)"
            )
        else:
            how = (
                "runs in ExecuTorch's portable fp32 kernel, with the tensors dequantized before it and quantized "
                f"again after{_split(program.partitions)}"
            )
        role = "int8 " if program.role == INT8 else ""
        yield not_delegated_op.finding(
            f"`{op.op}` ({count}){where} is not delegated to {deploy.backend} in the {role}ExecuTorch program: it "
            f"{how}. Its cost: {cost_words}.{_timing_words(deploy)}",
            module="",
            source=source,
            evidence=evidence,
            fix=FIX.format(
                equivalent=EQUIVALENTS.get(op.op, f"an op {deploy.backend} delegates that computes the same"),
                cost=cost_words.split(" (")[0] if cost_ms is not None else "its cost is not measured",
            ),
            leads_to=("QD026",),
        )
