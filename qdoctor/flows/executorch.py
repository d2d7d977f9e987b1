"""ExecuTorch with its XNNPACK backend (``qdoctor check --deploy executorch-xnnpack``): the int8 model and its float
baseline exported, lowered with ``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])``, serialized
to .pte programs and loaded in the ExecuTorch runtime. It is a deployment target, not a way a torch model is made:
no model in a script matches it; `--deploy` selects it by ``deploy_target``.

The int8 program is the script's own converted PT2E model when it has one (exported again as it is), else the
float baseline quantized here with XNNPACKQuantizer (symmetric, per-channel weights), calibrated on the
calibration batches. ExecuTorch is imported only when deploying (the optional extra `.[executorch]`).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import re
from importlib import metadata
from typing import Any

import torch

from qdoctor.facts import FlowKind
from qdoctor.facts.deploy import FLOAT, INT8, UNKNOWN_ROLE, PartitionEdge
from qdoctor.flows import _pte, register
from qdoctor.flows._base import Deployed, DeployedNode, DeployInputs, Flow, Lowered
from qdoctor.flows._building import calibrate
from qdoctor.introspect.flow import ModelFlow
from qdoctor.introspect.state import preserved_torch_state

TARGET = "executorch-xnnpack"
XNNPACK_BACKEND_ID = "XnnpackBackend"  # the backend id of XNNPACK's delegates in a .pte
XNNPACK_QUANTIZER = "XNNPACKQuantizer (symmetric, per-channel)"
_DELEGATE_CALL = "executorch_call_delegate"
_QDQ = re.compile(r"quantized_decomposed_(de)?quantize_per_")
_OTHER_BACKENDS = {"X86": "x86 Inductor (oneDNN)", "Arm": "ARM Inductor", "Inductor": "Inductor"}


def op_type(node_name: str) -> str:
    """ExecuTorch's operator name of a node (its get_delegation_info table): the node name without its suffix."""
    return re.sub(r"_[\d]+$", "", node_name)


def _elements(node: Any) -> int:
    value = node.meta.get("val")
    return int(value.numel()) if isinstance(value, torch.Tensor) else 0


def _made_for(quantizers: tuple[str, ...]) -> str | None:
    """The backend a quantizer is made for when it is not XNNPACK (None: XNNPACK's own, or unknown)."""
    for name in quantizers:
        short = name.rsplit(".", 1)[-1]
        if "XNNPACK" in short:
            return None
        for marker, backend in _OTHER_BACKENDS.items():
            if marker in short:
                return backend
    return None


def _quantize_for_xnnpack(given: DeployInputs) -> torch.nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    assert given.float_model is not None
    model = copy.deepcopy(given.float_model).eval()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, given.inputs).module(), quantizer)
    calibrate(prepared, given.batches or [given.inputs])
    return convert_pt2e(prepared)


def _edges(graph_module: Any) -> list[PartitionEdge]:
    """Tensors crossing between a delegate and the portable part of the program, and whether the delegate converts
    them (a dequantize feeding its output, a quantize reading its input)."""
    lowered = {n.name: getattr(graph_module, n.name) for n in graph_module.graph.nodes if n.op == "get_attr"}
    edges: list[PartitionEdge] = []
    for call in graph_module.graph.nodes:
        if call.op != "call_function" or op_type(call.name) != _DELEGATE_CALL:
            continue
        inner = lowered[call.args[0].name].original_module.graph
        placeholders = [n for n in inner.nodes if n.op == "placeholder"]
        outputs = next(n for n in inner.nodes if n.op == "output").args[0]
        user_inputs = placeholders[len(placeholders) - len(call.args[1:]) :]  # parameters come first
        for index, arg in enumerate(call.args[1:]):
            if arg.op == "call_function" and op_type(arg.name) not in ("getitem", _DELEGATE_CALL):
                converted = any(_QDQ.match(op_type(u.name)) for u in user_inputs[index].users)
                edges.append(PartitionEdge("in", op_type(arg.name), _elements(arg), converted))
        for item in call.users:
            produced = outputs[item.args[1]] if item.args[1] < len(outputs) else None
            converted = produced is not None and bool(_QDQ.match(op_type(produced.name)))
            for reader in item.users:
                if reader.op == "call_function" and op_type(reader.name) != _DELEGATE_CALL:
                    edges.append(PartitionEdge("out", op_type(reader.name), _elements(item), converted))
    return edges


def _runner(program: bytes, arguments: list[torch.Tensor]) -> Any:
    """One call of the program's forward in the ExecuTorch runtime. The loaded program is kept alive with its
    method: a method whose program was freed reads freed memory (a segmentation fault)."""
    from executorch.runtime import Runtime

    loaded = Runtime.get().load_program(program)
    held = (loaded, loaded.load_method("forward"))  # the closure holds both

    def run() -> Any:
        return held[1].execute(arguments)

    return run


class _OneOp(torch.nn.Module):
    """One aten op with its tensor arguments as inputs and its other arguments fixed (timing it alone)."""

    def __init__(self, op: Any, args: tuple[Any, ...], slots: list[int]) -> None:
        super().__init__()
        self.op, self.args, self.slots = op, args, slots

    def forward(self, *tensors: torch.Tensor) -> Any:
        args = list(self.args)
        for slot, tensor in zip(self.slots, tensors, strict=True):
            args[slot] = tensor
        return self.op(*args)


def _run_alone(node: Any) -> Any:
    """The portable op of ``node`` alone, in a program of its own on random tensors of its inputs' shapes (its
    cost in the runtime: the pip runtime gives no per-op profile). None when it cannot be rebuilt."""
    op = getattr(node.target, "_op", None)
    if op is None or node.kwargs:
        return None
    args, slots, tensors = list(node.args), [], []
    for index, arg in enumerate(node.args):
        if isinstance(arg, torch.fx.Node):
            value = arg.meta.get("val")
            if not isinstance(value, torch.Tensor) or not value.dtype.is_floating_point:
                return None
            slots.append(index)
            tensors.append(torch.rand(value.shape, dtype=value.dtype) * 2 - 1)
    return _lower_alone((op, tuple(args), slots, tensors))


def _lower_alone(call: _pte.OneCall) -> Any:
    """One op call in a program of its own, in the runtime's portable kernels (no partitioner)."""
    from executorch.exir import to_edge_transform_and_lower

    op, args, slots, tensors = call
    program = to_edge_transform_and_lower(torch.export.export(_OneOp(op, args, slots), tuple(tensors)))
    return _runner(program.to_executorch().buffer, tensors)


def _alone_or_none(call: _pte.OneCall) -> Any:
    try:
        return _lower_alone(call)
    except Exception:  # an op that does not export alone is not timed alone: its cost stays unmeasured
        return None


def _lower(role: str, model: torch.nn.Module, inputs: tuple[Any, ...], time_ops: bool = False) -> Lowered:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    # the out variants of quantize/dequantize: a program whose q/dq stay outside the delegates (a quantizer made for
    # another backend) serializes only with them
    importlib.import_module("executorch.kernels.quantized")
    edge = to_edge_transform_and_lower(torch.export.export(model, inputs), partitioner=[XnnpackPartitioner()])
    graph_module = edge.exported_program().graph_module
    info = get_delegation_info(graph_module)
    not_delegated = []
    for n in graph_module.graph.nodes:
        if n.op != "call_function" or op_type(n.name) == _DELEGATE_CALL:
            continue
        computes = op_type(n.name) != "getitem" and bool(n.all_input_nodes)
        alone = None
        if time_ops and computes:
            try:
                alone = _run_alone(n)
            except Exception:  # an op that does not export alone is not timed alone: its cost stays unmeasured
                alone = None
        not_delegated.append(
            DeployedNode(op_type(n.name), n.meta.get("stack_trace"), computes, _elements(n), run_alone=alone)
        )
    delegated = {op: row.delegated for op, row in info.delegation_by_operator.items() if row.delegated}
    quantized_ops = sum(
        row.delegated + row.non_delegated for op, row in info.delegation_by_operator.items() if _QDQ.match(op)
    )
    edges = _edges(graph_module)
    program = edge.to_executorch().buffer
    return Lowered(
        role,
        program,
        _runner(program, [t.contiguous() for t in inputs]),
        info.num_delegated_subgraphs,
        delegated,
        not_delegated,
        edges,
        quantized_ops,
    )


@register
class ExecuTorchXnnpackFlow(Flow):
    kind = FlowKind(
        TARGET,
        "ExecuTorch + XNNPACK (to_edge_transform_and_lower with XnnpackPartitioner, .pte in the ExecuTorch runtime)",
        exported_graph=True,
    )
    priority = 90
    static = True
    deploy_target = TARGET
    program_suffix = ".pte"

    def matches(self, look: ModelFlow) -> bool:
        """No torch model is made by a deployment target: `--deploy` selects it."""
        return False

    def deploy(self, given: DeployInputs) -> Deployed:
        unavailable: dict[str, str] = {}
        programs: list[Lowered] = []
        with preserved_torch_state(), torch.no_grad():
            if given.subject is not None:
                quantized, quantizer = given.subject, ", ".join(q.rsplit(".", 1)[-1] for q in given.subject_quantizers)
            elif given.float_model is not None:
                quantized, quantizer = _quantize_for_xnnpack(given), XNNPACK_QUANTIZER
            else:
                raise ValueError("no model to lower: the target has neither a PT2E int8 model nor a float baseline")
            programs.append(_lower(INT8, quantized, given.inputs, time_ops=given.time_ops))
            if given.float_model is not None:
                try:
                    programs.append(_lower(FLOAT, copy.deepcopy(given.float_model).eval(), given.inputs))
                except Exception as exc:  # the float baseline may not export; the int8 program is still read
                    unavailable[FLOAT] = f"lowering the float baseline raised {type(exc).__name__}: {exc}"[:300]
            else:
                unavailable[FLOAT] = "no float baseline in the target"
        return Deployed(
            target=TARGET,
            backend="XNNPACK",
            runtime=f"ExecuTorch {metadata.version('executorch')}",
            quantizer=quantizer or "the script's quantizer",
            quantizer_made_for=_made_for(given.subject_quantizers) if given.subject is not None else None,
            programs=programs,
            unavailable=unavailable,
        )

    def lower(self, role: str, model: torch.nn.Module, inputs: tuple[Any, ...]) -> Lowered:
        with preserved_torch_state(), torch.no_grad():
            return _lower(role, model, inputs)

    def quantize_for_target(self, given: DeployInputs) -> tuple[torch.nn.Module, str]:
        with preserved_torch_state(), torch.no_grad():
            return _quantize_for_xnnpack(given), XNNPACK_QUANTIZER

    def read_program(self, data: bytes, time_ops: bool = False) -> Deployed:
        """A .pte as it is. Its role is int8 when quantize/dequantize kernels run outside its delegates; else unknown
        (what a delegate computes in is not read: its payload is the backend's own format)."""
        try:
            importlib.import_module("executorch.runtime")
        except ImportError as exc:
            raise ImportError(
                f"reading a .pte needs ExecuTorch, which is not installed here ({exc}): pip install 'qdoctor[executorch]'"
            ) from None
        with preserved_torch_state(), torch.no_grad():
            program, inputs = _pte.read(UNKNOWN_ROLE, data, _alone_or_none if time_ops else None)
            if program.quantized_ops:
                program = dataclasses.replace(program, role=INT8)
        backends = set(program.partitions_by_backend)
        return Deployed(
            target=TARGET,
            backend="XNNPACK" if backends <= {XNNPACK_BACKEND_ID} else ", ".join(sorted(backends)),
            runtime=f"ExecuTorch {metadata.version('executorch')}",
            quantizer=None,
            quantizer_made_for=None,
            programs=[program],
            unavailable={FLOAT: "a .pte holds one program: there is no float baseline to lower or time beside it"},
            from_program=True,
            inputs=tuple(inputs),
        )
