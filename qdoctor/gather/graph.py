"""Graph facts: the nodes of a subject that has a graph (FX GraphModule from prepare_fx/convert_fx, a PT2E model
from torch.export + prepare_pt2e/convert_pt2e, an exported program, a TorchScript module), in execution order,
each classified as quantize / dequantize / int8 op / reference op / float op / layout / observer.

Read statically from the graph: nothing is run. Whether a value is int8 is propagated from the quantize nodes and
int8 ops forward, the way the kernels will see it.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from qdoctor import facts as F
from qdoctor.facts import GraphNode, QParams, SourceLocation
from qdoctor.facts.graph import LAYOUT_MODULES, WEIGHTED_OPS, short_op, target_kind
from qdoctor.facts.location import user_frame
from qdoctor.introspect.flow import node_target
from qdoctor.introspect.kinds import eager_module

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in [^\n]*\n(?P<code>[^\n]*)')


def parse_source(stack_trace: str | None, user_file: str | None) -> SourceLocation | None:
    """The deepest frame of the user's file in a node's recorded stack trace."""
    if not stack_trace or not user_file:
        return None
    frames = (
        traceback.FrameSummary(m.group("file"), int(m.group("line")), "", lookup_line=False, line=m.group("code"))
        for m in _FRAME.finditer(stack_trace)
    )
    return user_frame(frames, user_file)


def _qparams(args: Iterable[Any], weight: bool, per_channel: bool) -> QParams | None:
    args = list(args)
    for i, arg in enumerate(args):
        if isinstance(arg, torch.dtype):
            qmin = qmax = None
            if i >= 2 and all(isinstance(a, int) and not isinstance(a, bool) for a in args[i - 2 : i]):
                qmin, qmax = args[i - 2], args[i - 1]
            elif arg in (torch.quint8, torch.qint8, torch.qint32):
                info = {torch.quint8: (0, 255), torch.qint8: (-128, 127), torch.qint32: (-(2**31), 2**31 - 1)}
                qmin, qmax = info[arg]
            return QParams(str(arg), qmin, qmax, per_channel=per_channel, is_weight=weight)
    return None


def _node_inputs(node: torch.fx.Node) -> list[str]:
    names: list[str] = []

    def collect(n: torch.fx.Node) -> torch.fx.Node:
        names.append(n.name)
        return n

    torch.fx.node.map_arg((node.args, node.kwargs), collect)
    return list(dict.fromkeys(names))


def _module_of(node: torch.fx.Node) -> tuple[str | None, str | None]:
    stack = node.meta.get("nn_module_stack")
    if isinstance(stack, dict) and stack:
        path, type_name = list(stack.values())[-1]
        type_name = str(getattr(type_name, "__name__", type_name)).rsplit(".", 1)[-1]
        # export names nested paths "L['self'].features.0" or "features.0"; keep the module path
        path = re.sub(r"^L\['self'\]\.?", "", str(path))
        return (path or None), (type_name if path else None)
    return None, None


def fx_graph_nodes(
    gm: torch.fx.GraphModule, user_file: str | None, classify: Callable[[nn.Module], str]
) -> list[GraphNode]:
    """Graph facts of an FX GraphModule: convert_fx/prepare_fx output, or a PT2E model (torch.export .module())."""

    def submodule(path: str) -> nn.Module | None:
        try:
            return gm.get_submodule(path)  # named_modules() would hide a module registered under two names
        except AttributeError:
            return None

    decomposed = any(
        n.op == "call_function" and node_target(n).startswith(("quantized_decomposed.", "torchao."))
        for n in gm.graph.nodes
    )
    annotated = any("quantization_annotation" in n.meta for n in gm.graph.nodes)
    by_name: dict[str, GraphNode] = {}
    fx_by_name: dict[str, torch.fx.Node] = {}
    result: list[GraphNode] = []
    int8_valued: set[str] = set()
    for node in gm.graph.nodes:
        fx_by_name[node.name] = node
        target = node_target(node)
        module, module_type = _module_of(node)
        inputs = _node_inputs(node)
        kind: str | None
        qparams = None
        if node.op == "placeholder":
            kind = F.NODE_INPUT
        elif node.op == "output":
            kind = F.NODE_OUTPUT
        elif node.op == "get_attr":
            kind = F.NODE_ATTR
        elif node.op == "call_module":
            sub = submodule(str(node.target))
            module, module_type = str(node.target), type(sub).__name__ if sub is not None else None
            kind = _module_node_kind(sub, classify) if sub is not None else F.NODE_OTHER
            if kind == F.NODE_FLOAT_OP and not decomposed and any(i in int8_valued for i in inputs):
                kind = F.NODE_QUANTIZED_OP  # a float module class fed int8 (pooling, ReLU): int8 kernels
        else:
            kind = target_kind(target)
        if kind in (F.NODE_QUANTIZE, F.NODE_DEQUANTIZE) and node.op == "call_function":
            first = node.args[0] if node.args else None
            producer = by_name.get(first.name) if isinstance(first, torch.fx.Node) else None
            weight = isinstance(first, torch.fx.Node) and (
                first.op == "get_attr"
                or (producer is not None and producer.qparams is not None and producer.qparams.is_weight)
            )
            qparams = _qparams(node.args[1:], weight, per_channel="per_channel" in target)
        tensor_inputs = [by_name[i] for i in inputs if i in by_name]
        if kind is None:  # a call whose meaning depends on what it receives
            if any(i.name in int8_valued for i in tensor_inputs) and not decomposed:
                kind = F.NODE_QUANTIZED_OP
            elif decomposed and _is_reference(node, tensor_inputs, fx_by_name, annotated):
                kind = F.NODE_REFERENCE_OP
            else:
                kind = F.NODE_FLOAT_OP
        if kind in (F.NODE_QUANTIZE, F.NODE_QUANTIZED_OP) or (
            kind == F.NODE_LAYOUT and any(i.name in int8_valued for i in tensor_inputs)
        ):
            float_out = node.op == "call_module" and _float_output_module(submodule(str(node.target)))
            if not (kind == F.NODE_QUANTIZED_OP and float_out):
                int8_valued.add(node.name)
        graph_node = GraphNode(
            name=node.name,
            op=node.op,
            target=target,
            kind=kind,
            inputs=inputs,
            module=module,
            module_type=module_type,
            qparams=qparams,
            source=parse_source(node.meta.get("stack_trace"), user_file),
        )
        by_name[node.name] = graph_node
        result.append(graph_node)
    return result


def _float_output_module(module: nn.Module | None) -> bool:
    """Dynamic quantized modules take and return float tensors (int8 only inside)."""
    return module is not None and type(module).__module__.startswith("torch.ao.nn.quantized.dynamic")


def _module_node_kind(module: nn.Module, classify: Callable[[nn.Module], str]) -> str:
    kind = classify(module)
    if kind == F.OBSERVER:
        return F.NODE_OBSERVER
    if kind == F.FAKE_QUANT:
        return F.NODE_FAKE_QUANT
    if kind == F.QUANT_STUB:
        return F.NODE_QUANTIZE if type(module).__name__ == "Quantize" else F.NODE_OTHER
    if kind == F.DEQUANT_STUB:
        return F.NODE_DEQUANTIZE if type(module).__name__ == "DeQuantize" else F.NODE_OTHER
    if kind in (F.QUANTIZED, F.DYNAMIC_QUANTIZED):
        return F.NODE_QUANTIZED_OP
    if kind == F.FLOAT_FUNCTIONAL:  # QFunctional after convert runs int8 add/cat; FloatFunctional before it is float
        return F.NODE_QUANTIZED_OP if type(module).__name__ == "QFunctional" else F.NODE_FLOAT_OP
    if kind == F.REFERENCE_QUANTIZED:
        return F.NODE_REFERENCE_OP
    if type(module).__name__ in LAYOUT_MODULES:
        return F.NODE_LAYOUT
    return F.NODE_FLOAT_OP


def _is_reference(
    node: torch.fx.Node, inputs: list[GraphNode], fx_by_name: dict[str, torch.fx.Node], annotated: bool
) -> bool:
    """In a q/dq (PT2E) graph: is this float op part of a quantized pattern that Inductor lowers to int8?

    convert_pt2e keeps the quantizer's annotation on the nodes it covered; a graph loaded from a .pt2 file lost
    it, so then the pattern decides: the op reads a dequantized activation and either a dequantized weight or
    feeds a quantize; or it is a pointwise op fused onto such an op's output that feeds a quantize.
    """
    if annotated:
        return "quantization_annotation" in node.meta
    from_dq = [i for i in inputs if i.kind == F.NODE_DEQUANTIZE]
    activation_dq = [i for i in from_dq if not (i.qparams and i.qparams.is_weight)]
    weight_dq = [i for i in from_dq if i.qparams and i.qparams.is_weight]
    feeds_q = any(target_kind(node_target(u)) == F.NODE_QUANTIZE for u in node.users)
    if activation_dq and (weight_dq or feeds_q or short_op(node_target(node)) in WEIGHTED_OPS):
        return True
    return bool(feeds_q and len(inputs) >= 1 and inputs[0].kind == F.NODE_REFERENCE_OP)


# ------------------------------------------------------------------------------------------------ TorchScript


_HIERARCHY_PART = re.compile(r"([^.()]+)\(([^()]*)\)")


def _hierarchy(node: Any) -> tuple[str | None, str | None]:
    """ "features(Sequential).1(B).conv(Conv2d)" -> ("features.1.conv", "Conv2d")."""
    try:
        text = node.getModuleHierarchy()
    except Exception:
        return None, None
    parts = _HIERARCHY_PART.findall(text or "")
    if not parts:
        return None, None
    return ".".join(p[0] for p in parts), parts[-1][1]


def _is_tensor(value: Any) -> bool:
    try:
        return value.type().kind() == "TensorType"
    except Exception:
        return False


def script_graph_nodes(module: torch.jit.ScriptModule) -> list[GraphNode]:
    """Graph facts of a TorchScript module: its inlined graph, ops attributed to module paths."""
    graph = module.inlined_graph
    producers: dict[int, list[str]] = {}  # value id -> names of the tensor nodes it comes from
    result: list[GraphNode] = []
    by_name: dict[str, GraphNode] = {}
    int8_valued: set[str] = set()
    inputs = list(graph.inputs())[1:]  # [0] is self
    for value in inputs:
        if _is_tensor(value):
            gnode = GraphNode(name=value.debugName(), op="input", target="input", kind=F.NODE_INPUT, inputs=[])
            producers[value.unique()] = [gnode.name]
            result.append(gnode)
            by_name[gnode.name] = gnode

    def sources(value: Any) -> list[str]:
        return producers.get(value.unique(), [])

    def visit(block_nodes: Iterable[Any]) -> None:
        for node in block_nodes:
            kind_name = node.kind()
            outputs = list(node.outputs())
            if kind_name == "prim::If":
                blocks = list(node.blocks())
                for block in blocks:
                    visit(block.nodes())
                for i, out in enumerate(outputs):
                    producers[out.unique()] = [name for block in blocks for name in sources(list(block.outputs())[i])]
                continue
            if kind_name == "prim::Loop":
                for block in node.blocks():
                    visit(block.nodes())
                for out, value in zip(outputs, list(node.inputs())[2:], strict=False):
                    producers[out.unique()] = sources(value)
                continue
            if kind_name.startswith("prim::") or not any(_is_tensor(o) for o in outputs):
                # bookkeeping (lists, tuples, attributes, sizes): pass the tensor sources through
                upstream = [name for value in node.inputs() for name in sources(value)]
                for out in outputs:
                    producers[out.unique()] = upstream
                continue
            target = kind_name
            module_path, module_type = _hierarchy(node)
            in_names = list(dict.fromkeys(name for value in node.inputs() for name in sources(value)))
            kind = target_kind(target)
            tensor_inputs = [by_name[n] for n in in_names if n in by_name]
            if kind is None:
                kind = F.NODE_QUANTIZED_OP if any(i.name in int8_valued for i in tensor_inputs) else F.NODE_FLOAT_OP
            name = outputs[0].debugName()
            if name in by_name:
                name = f"{name}#{len(result)}"
            if (
                kind in (F.NODE_QUANTIZE,)
                or (kind == F.NODE_QUANTIZED_OP and "dynamic" not in target)
                or (kind == F.NODE_LAYOUT and any(i.name in int8_valued for i in tensor_inputs))
            ):
                int8_valued.add(name)
            gnode = GraphNode(
                name=name,
                op=kind_name,
                target=target,
                kind=kind,
                inputs=in_names,
                module=module_path,
                module_type=module_type,
            )
            result.append(gnode)
            by_name[name] = gnode
            for out in outputs:
                producers[out.unique()] = [name]

    visit(graph.nodes())
    outputs = [name for value in graph.outputs() for name in sources(value)]
    result.append(GraphNode(name="output", op="output", target="output", kind=F.NODE_OUTPUT, inputs=outputs))
    return result


def graph_nodes(
    subject: nn.Module, user_file: str | None, classify: Callable[[nn.Module], str]
) -> list[GraphNode] | None:
    """The subject's graph facts, or None when it has no graph (an eager module tree)."""
    model = eager_module(subject)
    if isinstance(model, torch.jit.ScriptModule):
        return script_graph_nodes(model)
    if isinstance(model, torch.fx.GraphModule):
        return fx_graph_nodes(model, user_file, classify)
    return None
