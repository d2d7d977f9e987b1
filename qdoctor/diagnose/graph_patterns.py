"""Pure helpers over graph facts (Facts.graph: list[GraphNode]) for rules: float compute stranded between int8
regions, leftover observers, q/dq counts. Plain data in, plain data out; no torch.

A *float region* is a connected group of float compute nodes that reads a value coming out of int8 (through a
dequantize, or the float output of an int8/reference op) and whose result is quantized again: each region is one
int8 -> float -> int8 round trip. Float ops before the first quantize or after the last dequantize are the
model's float head and tail, not fallbacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from qdoctor import facts as F
from qdoctor.facts import GraphNode
from qdoctor.facts.graph import WEIGHTED_OPS, short_op

# Compute whose float fallback costs real time (a matmul or convolution), as opposed to cheap pointwise ops: the
# ops with a weight operand (the graph vocabulary's WEIGHTED_OPS) but a plain lookup, plus batched matmuls, recurrent
# layers and attention.
HEAVY_OPS = (WEIGHTED_OPS - {"embedding"}) | {
    "baddbmm",
    "einsum",
    "gru",
    "lstm",
    "multi_head_attention_forward",
    "scaled_dot_product_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
}
HEAVY_MODULES = {
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Linear",
    "LSTM",
    "GRU",
    "MultiheadAttention",
    "Bilinear",
    "EmbeddingBag",
}


@dataclass
class FloatRegion:
    nodes: list[str]  # the float compute nodes, in graph order
    entries: list[str]  # int8-side nodes it reads from (dequantize, or an int8/reference op with a float output)
    exits: list[str]  # the quantize nodes its result feeds
    modules: list[str] = field(default_factory=list)  # module paths of its nodes, where known
    ops: list[str] = field(default_factory=list)  # op or module type of each node (e.g. "gelu", "Linear")
    heavy: bool = False  # holds a convolution/matmul-class op


def _op_name(node: GraphNode) -> str:
    if node.op == "call_module" and node.module_type:
        return node.module_type
    return short_op(node.target)


def is_heavy(node: GraphNode) -> bool:
    return _op_name(node) in HEAVY_OPS or (node.module_type in HEAVY_MODULES and node.op == "call_module")


def _users(nodes: Sequence[GraphNode]) -> dict[str, list[GraphNode]]:
    users: dict[str, list[GraphNode]] = {n.name: [] for n in nodes}
    for node in nodes:
        for name in node.inputs:
            if name in users:
                users[name].append(node)
    return users


def _is_int8_source(node: GraphNode) -> bool:
    """A node whose output is where float begins after int8: a dequantize of an activation, or an int8/reference op."""
    if node.kind == F.NODE_DEQUANTIZE:
        return not (node.qparams is not None and node.qparams.is_weight)
    return node.kind in (F.NODE_QUANTIZED_OP, F.NODE_REFERENCE_OP)


def float_regions(nodes: Sequence[GraphNode]) -> list[FloatRegion]:
    """Float compute stranded between int8 regions (int8 -> float -> int8 round trips), in graph order."""
    by_name = {n.name: n for n in nodes}
    users = _users(nodes)
    passes_float = (F.NODE_FLOAT_OP, F.NODE_LAYOUT)
    after_int8: dict[str, bool] = {}
    for node in nodes:  # graph order is a topological order
        after_int8[node.name] = node.kind in passes_float and any(
            _is_int8_source(by_name[i]) or after_int8.get(i, False) for i in node.inputs if i in by_name
        )
    before_int8: dict[str, bool] = {}
    for node in reversed(nodes):
        before_int8[node.name] = node.kind in passes_float and any(
            u.kind == F.NODE_QUANTIZE or (u.kind in passes_float and before_int8.get(u.name, False))
            for u in users[node.name]
        )
    stranded = [n for n in nodes if n.kind == F.NODE_FLOAT_OP and after_int8[n.name] and before_int8[n.name]]
    # group connected stranded nodes (through float/layout edges) into regions
    members = {n.name for n in stranded}
    region_of: dict[str, int] = {}
    regions: list[list[GraphNode]] = []
    for node in stranded:
        linked = {region_of[i] for i in _float_ancestors(node, by_name, members)}
        if not linked:
            region_of[node.name] = len(regions)
            regions.append([node])
            continue
        target = min(linked)
        for other in sorted(linked - {target}, reverse=True):  # merge regions joined by this node
            for moved in regions[other]:
                region_of[moved.name] = target
            regions[target].extend(regions[other])
            regions[other] = []
        region_of[node.name] = target
        regions[target].append(node)
    order = {n.name: i for i, n in enumerate(nodes)}
    result = []
    for group in regions:
        if not group:
            continue
        group.sort(key=lambda n: order[n.name])
        result.append(_describe(group, by_name, users))
    return result


def _float_ancestors(node: GraphNode, by_name: dict[str, GraphNode], members: set[str]) -> set[str]:
    """Stranded float nodes upstream of ``node`` reachable through float/layout nodes only."""
    found: set[str] = set()
    stack = [i for i in node.inputs if i in by_name]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        upstream = by_name[name]
        if name in members:
            found.add(name)
        elif upstream.kind == F.NODE_LAYOUT:
            stack.extend(i for i in upstream.inputs if i in by_name)
    return found


def _describe(group: list[GraphNode], by_name: dict[str, GraphNode], users: dict[str, list[GraphNode]]) -> FloatRegion:
    names = {n.name for n in group}
    entries: list[str] = []
    exits: list[str] = []

    def walk_up(name: str) -> None:
        node = by_name[name]
        if _is_int8_source(node):
            entries.append(name)
        elif node.kind == F.NODE_LAYOUT or (node.kind == F.NODE_FLOAT_OP and name not in names):
            for i in node.inputs:
                if i in by_name:
                    walk_up(i)

    def walk_down(name: str) -> None:
        for user in users[name]:
            if user.kind == F.NODE_QUANTIZE:
                exits.append(user.name)
            elif user.kind == F.NODE_LAYOUT:
                walk_down(user.name)

    for node in group:
        for i in node.inputs:
            if i in by_name and i not in names:
                walk_up(i)
        walk_down(node.name)
    return FloatRegion(
        nodes=[n.name for n in group],
        entries=list(dict.fromkeys(entries)),
        exits=list(dict.fromkeys(exits)),
        modules=list(dict.fromkeys(n.module for n in group if n.module)),
        ops=[_op_name(n) for n in group],
        heavy=any(is_heavy(n) for n in group),
    )


def observer_nodes(nodes: Iterable[GraphNode]) -> list[GraphNode]:
    """Observer and fake-quant nodes left in a graph (prepare_fx / prepare_pt2e output that was never converted)."""
    return [n for n in nodes if n.kind in (F.NODE_OBSERVER, F.NODE_FAKE_QUANT)]


def activation_qparams(nodes: Iterable[GraphNode]) -> list[str]:
    """Distinct dtypes/ranges of the activation quantize nodes, e.g. ["torch.uint8 [0, 255]"]."""
    seen: list[str] = []
    for node in nodes:
        q = node.qparams
        if node.kind == F.NODE_QUANTIZE and q is not None and not q.is_weight:
            text = f"{q.dtype} [{q.quant_min}, {q.quant_max}]" if q.quant_min is not None else q.dtype
            if text not in seen:
                seen.append(text)
    return seen
