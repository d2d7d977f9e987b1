"""Which quantization flow a model went through and how far along it is: the one vocabulary, decided in one place.

``model_flow(model)`` looks at a module once (every submodule classified once, its graph read once) and answers:

- ``flow``: the flow that produced it: EAGER, FX, PT2E, TORCHAO, TORCHSCRIPT or NONE ("eager", "fx", "pt2e",
  "torchao", "torchscript", "none"), and ``stage``: PREPARED, CONVERTED, REFERENCE or None. These strings are the
  JSON report's ``flow.flow`` / ``flow.stage`` (facts.FlowInfo). gather/flows.py asks ``flow_and_stage`` (the same
  table ``model_flow`` uses) over the facts it has already gathered, whose graph nodes are classified more finely
  than this look does (int8 propagation, q/dq reference patterns, TorchScript graphs).
- ``level``: 0 float, 1 a qconfig set, 2 observers / fake-quant / QAT modules, 3 quantized (int8 modules, a torchao
  weight, or quantize ops in a graph). load/ picks the most quantized model of a script as the subject and the least
  quantized one as its float baseline.
- ``qat`` (fake-quant or QAT modules), ``dynamic_only`` (dynamic int8 modules and no static int8 module or observer:
  quantize_dynamic) and ``compiled`` (behind torch.compile; the rest describes the module inside).

prescribe's vocabulary (prescribe/recipe.py detect_flow: EAGER "eager", FX "fx", DYNAMIC "dynamic", QAT "qat",
OTHER "other") says how a fix rebuilds the model, and maps from this one: ``qat`` -> QAT; a GraphModule that is not
behind torch.compile -> OTHER when it is a converted PT2E model, else FX (a prepared PT2E or float exported graph is
rebuilt the FX way); ``dynamic_only`` -> DYNAMIC; everything else (eager, torchao, TorchScript, compiled, float) ->
EAGER.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from qdoctor import facts as F
from qdoctor.facts.graph import target_kind
from qdoctor.introspect.kinds import classify, eager_module

# The flow that produced a model (FlowInfo.flow).
EAGER, FX, PT2E, TORCHAO, TORCHSCRIPT, NONE = "eager", "fx", "pt2e", "torchao", "torchscript", "none"
# How far along it is (FlowInfo.stage); None when nothing says.
PREPARED, CONVERTED, REFERENCE = "prepared", "converted", "reference"
# The dialect of a GraphModule's graph: torch-level FX calls, or aten ops (torch.export, PT2E).
FX_GRAPH, ATEN_GRAPH = "fx", "aten"

_ATEN_NAMESPACES = ("aten.", "quantized_decomposed.")
_EAGER_KINDS = {
    F.QUANTIZED,
    F.DYNAMIC_QUANTIZED,
    F.OBSERVER,
    F.FAKE_QUANT,
    F.QAT,
    F.QUANT_STUB,
    F.REFERENCE_QUANTIZED,
}
_QUANTIZED_KINDS = {F.QUANTIZED, F.DYNAMIC_QUANTIZED, F.REFERENCE_QUANTIZED, F.TORCHAO_QUANTIZED}  # level 3
_OBSERVING_KINDS = {F.OBSERVER, F.FAKE_QUANT, F.QAT}  # level 2


@dataclass(frozen=True)
class ModelFlow:
    flow: str  # EAGER, FX, PT2E, TORCHAO, TORCHSCRIPT, NONE
    stage: str | None  # PREPARED, CONVERTED, REFERENCE, None
    level: int  # 0 float, 1 qconfig, 2 observers/fake-quant/QAT, 3 quantized
    qat: bool  # fake-quant or QAT modules: trained (or being trained) with QAT
    dynamic_only: bool  # dynamic int8 modules and no static int8 module or observer (quantize_dynamic)
    compiled: bool  # a torch.compile wrapper; the rest describes the module inside it


def flow_and_stage(
    script: bool, graph: str | None, module_kinds: Set[str], node_kinds: Set[str]
) -> tuple[str, str | None]:
    """The flow and stage of a model from what it holds: whether it is TorchScript, its graph's dialect (FX_GRAPH,
    ATEN_GRAPH, or None without a graph), its modules' kinds and its graph nodes' kinds (facts vocabulary)."""
    if script:
        flow = TORCHSCRIPT
    elif graph == ATEN_GRAPH:
        flow = PT2E
    elif graph is not None:
        flow = FX
    elif F.TORCHAO_QUANTIZED in module_kinds:
        return TORCHAO, CONVERTED
    elif module_kinds & _EAGER_KINDS:
        flow = EAGER
    else:
        return NONE, None
    if F.NODE_REFERENCE_OP in node_kinds or F.REFERENCE_QUANTIZED in module_kinds:
        stage: str | None = REFERENCE if flow == FX else CONVERTED
    elif node_kinds & {F.NODE_QUANTIZED_OP, F.NODE_QUANTIZE} or module_kinds & {F.QUANTIZED, F.DYNAMIC_QUANTIZED}:
        stage = CONVERTED
    elif module_kinds & _OBSERVING_KINDS or node_kinds & {F.NODE_OBSERVER, F.NODE_FAKE_QUANT}:
        stage = PREPARED
    else:
        stage = None
    return flow, stage


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
    """The flow, stage and quantization level of ``model`` (and of the module inside a torch.compile wrapper)."""
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
    flow, stage = flow_and_stage(isinstance(inner, torch.jit.ScriptModule), graph, all_kinds, node_kinds)
    return ModelFlow(
        flow=flow,
        stage=stage,
        level=level,
        qat=bool(own_kinds & {F.FAKE_QUANT, F.QAT}),
        dynamic_only=F.DYNAMIC_QUANTIZED in own_kinds and not own_kinds & {F.QUANTIZED, F.OBSERVER},
        compiled=inner is not model,
    )


def _has_quantize_nodes(graph_module: torch.fx.GraphModule) -> bool:
    targets = " ".join(str(n.target) for n in graph_module.graph.nodes)
    return "quantize_per_tensor" in targets or "quantized" in targets
