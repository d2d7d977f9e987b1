"""QD026 partition-boundaries: an int8 ExecuTorch program split into several delegated partitions, with tensors
dequantized where they leave one and quantized again where they enter the next (``--deploy executorch-xnnpack``)."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts
from qdoctor.facts.deploy import FLOAT, INT8

FIX = """\
# Make the ops between the partitions delegable (see QD025 for each one), or move them before the first or after the
# last delegated op (pre/post-processing), so that the int8 program is one partition:
from executorch.devtools.backend_debug import get_delegation_info
info = get_delegation_info(edge.exported_program().graph_module)
assert info.num_delegated_subgraphs == 1, info.get_summary()"""


@rule(
    "QD026",
    "partition-boundaries",
    Severity.INFO,
    "an int8 ExecuTorch program split into several delegated partitions, converting int8 <-> float at their edges",
    needs=("deploy",),
    explains_slowdown=True,
)
def partition_boundaries(facts: Facts) -> Iterator[Finding]:
    deploy = facts.deploy
    assert deploy is not None
    program = deploy.program(INT8)
    if program is None or program.partitions < 2 or not program.edges:
        return
    converted = [e for e in program.edges if e.converted]
    elements = sum(e.elements for e in converted)
    ops = sorted({e.op for e in program.edges})
    float_program = deploy.program(FLOAT)
    evidence: dict = {
        "partitions": program.partitions,
        "edges": len(program.edges),
        "converted_edges": len(converted),
        "converted_elements_per_call": elements,
        "portable_ops_between": ops,
        "float_partitions": float_program.partitions if float_program is not None else None,
    }
    cost = (
        "their own time is not measured (the ExecuTorch runtime gives no per-op profile here); each converted "
        f"element is read and written once more per call ({elements} elements)"
    )
    slower = ""
    if deploy.speedup is not None:
        evidence["int8_speedup_over_float"] = round(deploy.speedup.value, 3)
        slower = f" The int8 program is {deploy.speedup.value:.2f}x the speed of the float program."
    yield partition_boundaries.finding(
        f"The int8 ExecuTorch program is split into {program.partitions} {deploy.backend} partitions by "
        f"{', '.join(f'`{op}`' for op in ops)}: {len(program.edges)} tensors cross a partition edge, "
        f"{len(converted)} of them dequantized on the way out or quantized on the way in; {cost}.{slower}",
        module="",
        evidence=evidence,
        fix=FIX,
    )
