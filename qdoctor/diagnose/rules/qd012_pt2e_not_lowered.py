"""QD012 pt2e-not-lowered: a converted PT2E model run eagerly, or compiled without Inductor freezing, keeps its
quantize/dequantize reference pattern and computes in fp32 plus the q/dq overhead."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import subject_label, subject_variable
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts
from qdoctor.facts.deploy import INT8
from qdoctor.facts.graph import count_kinds

FIX = """\
import torch
import torch._inductor.config as inductor_config

inductor_config.freezing = True  # or TORCHINDUCTOR_FREEZING=1, before the first call
{compiled} = torch.compile({model})
with torch.no_grad():
    {compiled}(*example_inputs)  # compiles (seconds); later calls run int8 oneDNN kernels"""


DEPLOY_FIX = """\
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower

edge = to_edge_transform_and_lower(torch.export.export({model}, example_inputs), partitioner=[XnnpackPartitioner()])
program = edge.to_executorch()  # program.buffer is the .pte"""


def _evidence(facts: Facts) -> dict:
    counts = count_kinds(facts.graph or [])
    evidence: dict = {
        "quantize_nodes": counts.get(F.NODE_QUANTIZE, 0),
        "dequantize_nodes": counts.get(F.NODE_DEQUANTIZE, 0),
        "reference_ops": counts.get(F.NODE_REFERENCE_OP, 0),
    }
    if facts.profile is not None and facts.profile.categories:
        evidence["quantize_dequantize_time_share"] = round(facts.profile.share(F.CAT_QDQ), 3)
        evidence["int8_kernel_time_share"] = round(facts.profile.share(F.CAT_INT8), 3)
    if facts.benchmark is not None:
        evidence.update(facts.benchmark.evidence())
    return evidence


@rule(
    "QD012",
    "pt2e-not-lowered",
    Severity.WARNING,
    "a converted PT2E model runs its quantize/dequantize reference graph (eagerly, or compiled without Inductor "
    "freezing) instead of int8 kernels",
    # the graph is asked for below: a .pte target has a flow and a deployment but no torch graph
    needs=("flow",),
    explains_slowdown=True,
)
def pt2e_not_lowered(facts: Facts) -> Iterator[Finding]:
    flow = facts.flow
    assert flow is not None
    if not flow.kind.exported_graph or flow.stage != "converted":
        return
    if facts.deploy is not None:  # --deploy or a .pte: lowered for that runtime (QD025, QD026 read how)
        yield from _no_delegate(facts)
        return
    if facts.graph is None:
        return
    counts = count_kinds(facts.graph)
    if not counts.get(F.NODE_REFERENCE_OP):
        return
    compiled = flow.compiled
    if compiled is not None and compiled.backend == "inductor" and compiled.freezing:
        return
    name, variable = subject_label(facts), subject_variable(facts, fallback="converted")
    if compiled is None:
        how = "runs eagerly"
        why = (
            "every quantized op runs as dequantize -> fp32 op -> quantize, weights are dequantized on every call, "
            "and no int8 kernel runs"
        )
    elif compiled.backend != "inductor":
        how = f"is compiled with the {compiled.backend or 'unknown'} backend"
        why = "only Inductor (with freezing) lowers the q/dq patterns to int8 kernels; this backend keeps them"
    else:
        how = f"is compiled with Inductor but freezing is off ({compiled.freezing_source})"
        why = (
            "without freezing Inductor cannot constant-fold and prepack the int8 weights, so the convolutions and "
            "linears stay fp32 with the weights dequantized on every call"
        )
    evidence = _evidence(facts)
    if compiled is not None:
        evidence["compile_backend"] = compiled.backend
        evidence["inductor_freezing"] = compiled.freezing
        evidence["freezing_source"] = compiled.freezing_source
    slower = ""
    if "subject_ms" in evidence:
        slower = f" It runs in {evidence['subject_ms']:.2f} ms vs {evidence['float_ms']:.2f} ms for the float model."
    elif "quantize_dequantize_time_share" in evidence:
        slower = f" Quantize/dequantize take {evidence['quantize_dequantize_time_share']:.0%} of its profiled time."
    source = compiled.source if compiled is not None and compiled.source else flow.source
    # compiled: compile the convert_pt2e(...) result again, with freezing; eager: compile the subject itself
    model_name = "converted" if compiled is not None else variable
    yield pt2e_not_lowered.finding(
        f"`{name}` is a converted PT2E model ({evidence['reference_ops']} quantized ops in q/dq reference form) and "
        f"{how}: {why}.{slower} Compile it with Inductor and freezing on to get int8 kernels.",
        module="",
        source=source,
        evidence=evidence,
        fix=("# converted = convert_pt2e(prepared)\n" if compiled is not None else "")
        + FIX.format(compiled=f"{variable}_compiled" if compiled is None else variable, model=model_name),
    )


def _no_delegate(facts: Facts) -> Iterator[Finding]:
    """--deploy: the int8 program was lowered but its backend took nothing (no delegate): every op runs in the
    runtime's portable kernels, the quantized ones as quantize/dequantize around fp32 ops."""
    deploy = facts.deploy
    assert deploy is not None
    program = deploy.subject()
    if program is None or program.role != INT8 or program.partitions > 0:
        return
    what = "kernel calls" if deploy.from_pte else "ops"
    yield pt2e_not_lowered.finding(
        f"`{subject_label(facts)}` is quantized but its int8 {deploy.target} program has no {deploy.backend} "
        f"delegate: all {program.not_delegated_nodes} {what} run in the runtime's portable kernels, the quantized "
        "ones as quantize/dequantize around fp32 ops. Lower it with the backend's partitioner, from a model quantized "
        "with the backend's own quantizer.",
        module="",
        source=facts.flow.source if facts.flow is not None else None,
        evidence={
            "deploy": deploy.target,
            "partitions": 0,
            "not_delegated_nodes": program.not_delegated_nodes,
            "quantize_dequantize_kernels": program.quantized_ops,
        },
        fix=DEPLOY_FIX.format(model=subject_variable(facts, fallback="converted")),
    )
