"""QD019 pt2e-fp32-op: ops the PT2E quantizer left in fp32 between quantized ops, each costing a
quantize/dequantize pair (and, for a convolution or matmul, the float compute itself)."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.graph_patterns import float_regions
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts

FIX = """\
# The quantizer has no int8 pattern for {ops}. Move it out of the quantized region (before the first
# or after the last quantized layer), replace it with an op the quantizer fuses (ReLU/Hardtanh after a
# conv), or keep its neighbours in fp32 too, so the model pays no quantize/dequantize round trip:
quantizer.set_module_name_qconfig("{module}", None)  # the layer that feeds it stays fp32"""


@rule(
    "QD019",
    "pt2e-fp32-op",
    Severity.INFO,
    "ops the PT2E quantizer left in fp32 between quantized ops (an int8 -> fp32 -> int8 round trip each)",
    needs=("graph", "flow"),
    explains_slowdown=True,
)
def pt2e_fp32_op(facts: Facts) -> Iterator[Finding]:
    flow = facts.flow
    assert flow is not None and facts.graph is not None
    if not flow.kind.exported_graph or flow.stage not in ("converted", "prepared"):
        return
    for region in float_regions(facts.graph):
        first = facts.graph_node(region.nodes[0])
        module = region.modules[0] if region.modules else region.nodes[0]
        source = first.source if first is not None else None
        if source is None and region.modules:
            info = facts.module(region.modules[0])
            source = info.source if info is not None else None
        ops = ", ".join(dict.fromkeys(region.ops))
        entry = facts.graph_node(region.entries[0]) if region.entries else None
        feeder = (entry.module if entry is not None and entry.module else None) or module
        yield pt2e_fp32_op.finding(
            f"{ops} ({', '.join(region.nodes)}) runs in fp32 between quantized ops: the quantizer has no int8 "
            f"pattern for it, so the graph dequantizes before it ({', '.join(region.entries) or 'its input'}) and "
            f"quantizes again after it ({', '.join(region.exits)})"
            + (": a convolution/matmul left in fp32 costs its full float time." if region.heavy else "."),
            module=module,
            source=source,
            evidence={
                "nodes": region.nodes,
                "ops": region.ops,
                "entries": region.entries,
                "exits": region.exits,
                "modules": region.modules,
                "heavy": region.heavy,
            },
            fix=FIX.format(ops=ops, module=feeder),
            severity=Severity.WARNING if region.heavy else None,
        )
