"""How far along a quantization flow a model is, from one look at it: decided in one place.

``model_flow(model)`` looks at a module once (every submodule classified once, its graph read once) and answers
what the flows (qdoctor.flows) detect a flow from and what loading picks models by:

- ``script`` (a TorchScript module), ``graph`` (the dialect of its graph: FX_GRAPH torch-level calls, ATEN_GRAPH
  torch.export/PT2E aten ops, or None without a graph), ``module_kinds`` and ``node_kinds`` (facts vocabulary).
  Which flow made the model is the flows' answer over this look (``qdoctor.flows.detect``); gather/flows.py asks
  it over the facts it has already gathered, whose graph nodes are classified more finely than this look does.
- ``level``: 0 float, 1 a qconfig set, 2 observers / fake-quant / QAT modules, 3 quantized (int8 modules, a torchao
  weight, or quantize ops in a graph). load/ picks the most quantized model of a script as the subject and the least
  quantized one as its float baseline.
- ``qat`` (fake-quant or QAT modules), ``dynamic_only`` (dynamic int8 modules and no static int8 module or observer:
  quantize_dynamic) and ``compiled`` (behind torch.compile; the rest describes the module inside).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from qdoctor import facts as F
from qdoctor.facts.graph import target_kind
from qdoctor.introspect.kinds import classify, eager_module

# The dialect of a GraphModule's graph: torch-level FX calls, or aten ops (torch.export, PT2E).
FX_GRAPH, ATEN_GRAPH = "fx", "aten"

_ATEN_NAMESPACES = ("aten.", "quantized_decomposed.")
_QUANTIZED_KINDS = {F.QUANTIZED, F.DYNAMIC_QUANTIZED, F.REFERENCE_QUANTIZED, F.TORCHAO_QUANTIZED}  # level 3
_OBSERVING_KINDS = {F.OBSERVER, F.FAKE_QUANT, F.QAT}  # level 2


@dataclass(frozen=True)
class ModelFlow:
    script: bool  # a TorchScript module
    graph: str | None  # FX_GRAPH, ATEN_GRAPH, or None without a graph
    module_kinds: frozenset[str]  # the kinds of its modules (facts vocabulary)
    node_kinds: frozenset[str]  # the kinds of its graph's call_function nodes (facts vocabulary)
    level: int  # 0 float, 1 qconfig, 2 observers/fake-quant/QAT, 3 quantized
    qat: bool  # fake-quant or QAT modules: trained (or being trained) with QAT
    dynamic_only: bool  # dynamic int8 modules and no static int8 module or observer (quantize_dynamic)
    compiled: bool  # a torch.compile wrapper; the rest describes the module inside it


def graph_dialect(calls: Iterable[tuple[str, str]]) -> str:
    """ATEN_GRAPH when any call_function of a graph, given as (op, target name) pairs, is an aten or
    quantized_decomposed op (torch.export, PT2E); FX_GRAPH otherwise."""
    return ATEN_GRAPH if any(op == "call_function" and t.startswith(_ATEN_NAMESPACES) for op, t in calls) else FX_GRAPH


def node_target(node: torch.fx.Node) -> str:
    """An FX node's target as a name: "aten.conv2d.default", "torch.quantize_per_tensor", "getitem", a module path."""
    target = node.target
    if node.op in ("call_module", "get_attr", "call_method", "placeholder", "output"):
        return str(target)
    if isinstance(target, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
        return str(target)
    if target is operator.getitem:
        return "getitem"
    try:
        from torch.fx.node import _get_qualified_name

        return _get_qualified_name(cast(Callable[..., Any], target))
    except Exception:
        return getattr(target, "__name__", repr(target))


def model_flow(model: nn.Module) -> ModelFlow:
    """One look at ``model`` (the module inside a torch.compile wrapper): its graph, kinds and quantization level."""
    inner = eager_module(model)
    modules = list(inner.modules())
    kinds = [classify(m) for m in modules]
    all_kinds = set(kinds)
    # a dynamic Linear holds its packed weights in a static-quantized child module: not a static int8 layer
    inside_dynamic = {
        id(child)
        for m, kind in zip(modules, kinds, strict=True)
        if kind == F.DYNAMIC_QUANTIZED
        for child in m.modules()
        if child is not m
    }
    own_kinds = {kind for m, kind in zip(modules, kinds, strict=True) if id(m) not in inside_dynamic}

    if all_kinds & _QUANTIZED_KINDS:
        level = 3
    elif all_kinds & _OBSERVING_KINDS:
        level = 2
    elif any(getattr(m, "qconfig", None) is not None for m in modules):
        level = 1
    else:
        level = 0
    # PT2E/FX q-dq nodes in a GraphModule anywhere in the tree
    if level < 3 and any(_has_quantize_nodes(m) for m in modules if isinstance(m, torch.fx.GraphModule)):
        level = 3

    graph = None
    node_kinds: set[str] = set()
    if isinstance(inner, torch.fx.GraphModule):
        calls = [(node.op, node_target(node)) for node in inner.graph.nodes]
        graph = graph_dialect(calls)
        node_kinds = {kind for op, name in calls if op == "call_function" and (kind := target_kind(name))}
    return ModelFlow(
        script=isinstance(inner, torch.jit.ScriptModule),
        graph=graph,
        module_kinds=frozenset(all_kinds),
        node_kinds=frozenset(node_kinds),
        level=level,
        qat=bool(own_kinds & {F.FAKE_QUANT, F.QAT}),
        dynamic_only=F.DYNAMIC_QUANTIZED in own_kinds and not own_kinds & {F.QUANTIZED, F.OBSERVER},
        compiled=inner is not model,
    )


def _has_quantize_nodes(graph_module: torch.fx.GraphModule) -> bool:
    targets = " ".join(str(n.target) for n in graph_module.graph.nodes)
    return "quantize_per_tensor" in targets or "quantized" in targets
