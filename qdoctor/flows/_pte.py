"""A serialized ExecuTorch program (.pte) read as it is, for ``qdoctor check program.pte``: ExecuTorch's own
deserializer (``executorch.exir._serialize._program.deserialize_pte_binary``) gives the Program flatbuffer, whose
``forward`` execution plan lists its operators, its delegates (with their backend ids) and chains of instructions:
a ``DelegateCall`` runs one delegated partition, a ``KernelCall`` one operator in the runtime's own (portable or
quantized) kernels. The program is then loaded in the runtime (``Runtime.get().load_program``), whose method metadata
gives the shapes and dtypes of its inputs: it runs on random inputs of those.

What a .pte does not hold, and so is not read: the stack traces of the export (no user's line for an op), the ops
inside a delegate (its payload is the backend's own format), and which values a delegate call reads or writes (its
arguments are one list), so neither the partition edges nor whether a delegate computes in int8.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from qdoctor.flows._base import DeployedNode, Lowered

METHOD = "forward"
# ExecuTorch's ScalarType codes (the same numbering as c10's) of the inputs a method may take
_DTYPES = {
    0: torch.uint8,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.int64,
    5: torch.float16,
    6: torch.float32,
    7: torch.float64,
    11: torch.bool,
    15: torch.bfloat16,
}
_QDQ_KERNEL = ("quantized_decomposed::quantize_per_", "quantized_decomposed::dequantize_per_")


@functools.cache
def op_name(name: str, overload: str) -> str:
    """The facts' name of a kernel (the edge graph's node name, as get_delegation_info lists it): the functional
    overload whose out variant the .pte calls (ExecuTorch's own to_out_variant), ``aten::add`` ``out`` ->
    ``aten_add_Tensor``, ``aten::grid_sampler_2d`` ``out`` -> ``aten_grid_sampler_2d_default``. An op torch does
    not know here keeps its overload's stem (``Tensor_out`` -> ``Tensor``, ``out`` -> ``default``)."""
    namespace, _, op = name.partition("::")
    return f"{namespace}_{op}_{_functional(namespace, op, overload)}".replace(".", "_")


def _functional(namespace: str, op: str, overload: str) -> str:
    from executorch.exir.operator.convert import to_out_variant

    packet = getattr(getattr(torch.ops, namespace, None), op, None)
    for candidate in packet.overloads() if packet is not None else []:
        functional = getattr(packet, candidate)
        try:
            out, _ = to_out_variant(functional)
        except Exception:  # an overload with no out variant (or one of the out variants itself)
            continue
        if out is not None and out is not functional and out._overloadname == overload:
            return str(candidate)
    return overload.removesuffix("out").rstrip("_") or "default"


def _computes(name: str, plan: Any, args: list[int]) -> bool:
    """It reads a tensor (an out variant's out tensor is its last argument): not a constant maker (``aten::full``)
    nor the runtime's own glue (``executorch_prim::``, symbolic sizes)."""
    from executorch.exir.schema import Tensor

    if name.startswith("executorch_prim::") or "sym_" in name:
        return False
    return any(isinstance(plan.values[a].val, Tensor) for a in args[:-1])


def _out_elements(plan: Any, args: list[int]) -> int:
    """Elements of a kernel call's output: an out variant's out tensor is its last argument."""
    value = plan.values[args[-1]].val if args else None
    sizes = getattr(value, "sizes", None)
    return math.prod(sizes) if isinstance(sizes, list) else 0


def _plan(program: Any) -> Any:
    plans = {plan.name: plan for plan in program.execution_plan}
    if METHOD not in plans:
        raise ValueError(f"the program has no {METHOD!r} method (its methods: {', '.join(sorted(plans)) or 'none'})")
    return plans[METHOD]


# (the functional op, its arguments with None where a tensor goes, those slots, random tensors of their shapes)
OneCall = tuple[Any, tuple[Any, ...], list[int], list[torch.Tensor]]
Alone = Callable[[OneCall], Callable[[], Any] | None]
MAX_ALONE = 8  # ops of a program rebuilt alone to be timed (one call of each distinct op)


def one_call(plan: Any, name: str, overload: str, args: list[int]) -> OneCall | None:
    """A kernel call rebuilt as a call of its functional op, from the values the program records for its arguments:
    tensors of their sizes (random floats), ints, floats, bools, int lists, None. None when an argument is of
    another kind, or a tensor is not floating point (a random index tensor would not say what the op costs)."""
    from executorch.exir.schema import Bool, Double, Int, IntList, Null
    from executorch.exir.schema import Tensor as ProgramTensor

    namespace, _, op = name.partition("::")
    packet = getattr(getattr(torch.ops, namespace, None), op, None)
    functional = getattr(packet, _functional(namespace, op, overload), None) if packet is not None else None
    if functional is None:
        return None
    count = len(functional._schema.arguments)
    values: list[Any] = []
    slots: list[int] = []
    tensors: list[torch.Tensor] = []
    for index, value in enumerate(plan.values[a].val for a in args[:count]):
        if isinstance(value, ProgramTensor):
            dtype = _DTYPES.get(int(value.scalar_type))
            if dtype is None or not dtype.is_floating_point:
                return None
            slots.append(index)
            tensors.append(torch.rand(tuple(value.sizes), dtype=dtype) * 2 - 1)
            values.append(None)
        elif isinstance(value, Null):
            values.append(None)
        elif isinstance(value, Int):
            values.append(value.int_val)
        elif isinstance(value, Bool):
            values.append(value.bool_val)
        elif isinstance(value, Double):
            values.append(float(value.double_val))
        elif isinstance(value, IntList):
            values.append([plan.values[i].val.int_val for i in value.items])
        else:
            return None
    return functional, tuple(values), slots, tensors


def read_instructions(data: bytes, alone: Alone | None = None) -> tuple[dict[str, int], list[DeployedNode], int]:
    """Delegated partitions per backend id, the kernel calls outside the delegates (one DeployedNode each, no stack
    trace) and how many of those quantize or dequantize. ``alone``: builds the run of one call rebuilt by itself
    (the first call of each distinct computing op, up to MAX_ALONE, when there is a delegate)."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DelegateCall, KernelCall

    try:
        program = deserialize_pte_binary(data).program
    except Exception as exc:  # the flatbuffer reader fails in many ways on bytes that are not a (whole) program
        raise ValueError(f"not an ExecuTorch program, or a truncated one ({str(exc)[:160]})") from None
    plan = _plan(program)
    partitions: Counter[str] = Counter()
    nodes: list[DeployedNode] = []
    quantized = 0
    rebuilt: set[str] = set()
    if alone is not None and not any(
        isinstance(i.instr_args, DelegateCall) for c in plan.chains for i in c.instructions
    ):
        alone = None  # no delegate: not one op left out, the whole program (QD012): nothing to time alone
    for chain in plan.chains:
        for instruction in chain.instructions:
            call = instruction.instr_args
            if isinstance(call, DelegateCall):
                partitions[plan.delegates[call.delegate_index].id] += 1
            elif isinstance(call, KernelCall):
                operator = plan.operators[call.op_index]
                quantized += operator.name.startswith(_QDQ_KERNEL)
                name = op_name(operator.name, operator.overload)
                computes = _computes(operator.name, plan, call.args)
                nodes.append(DeployedNode(name, None, computes, _out_elements(plan, call.args)))
                if computes and alone is not None and name not in rebuilt and len(rebuilt) < MAX_ALONE:
                    rebuilt.add(name)
                    try:
                        found = one_call(plan, operator.name, operator.overload, call.args)
                    except Exception:  # arguments this reading does not rebuild: the op is not timed alone
                        found = None
                    nodes[-1].run_alone = alone(found) if found is not None else None
    return dict(partitions), nodes, quantized


def _random(sizes: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.randn(sizes, dtype=dtype)
    if dtype == torch.bool:
        return torch.rand(sizes) < 0.5
    return torch.randint(0, 8, sizes, dtype=dtype)


def load(data: bytes) -> tuple[Any, list[torch.Tensor]]:
    """The program loaded in the runtime with its forward method, and random inputs of the shapes and dtypes its
    metadata records. The program object is returned with the method: a method whose program was freed reads freed
    memory."""
    import importlib

    from executorch.runtime import Runtime

    # the out variants of quantize/dequantize: a program that runs them outside its delegates loads only with them
    importlib.import_module("executorch.kernels.quantized")
    try:
        program = Runtime.get().load_program(data)
        method = program.load_method(METHOD)
    except RuntimeError as exc:
        missing = " (an operator it calls has no kernel in this runtime)" if "0x:14" in str(exc) else ""
        raise ValueError(f"the ExecuTorch runtime cannot load it ({str(exc)[:160]}){missing}") from None
    meta = method.metadata
    inputs = []
    for index in range(meta.num_inputs()):
        try:
            tensor = meta.input_tensor_meta(index)
        except Exception:  # a non-tensor input (an int, a list) has no tensor metadata
            raise ValueError(f"input {index} of {METHOD} is not a tensor: qdoctor cannot make it") from None
        dtype = _DTYPES.get(int(tensor.dtype()))
        if dtype is None:
            raise ValueError(f"input {index} of {METHOD} has ExecuTorch scalar type {tensor.dtype()}, not supported")
        inputs.append(_random(tuple(tensor.sizes()), dtype))
    return (program, method), inputs


def read(role: str, data: bytes, alone: Alone | None = None) -> tuple[Lowered, list[torch.Tensor]]:
    """A .pte as a Lowered program (the ops inside a delegate are not read: ``delegated`` stays empty, its delegate
    calls are counted per backend id), with the inputs it runs on."""
    partitions, nodes, quantized = read_instructions(data, alone)
    held, inputs = load(data)

    def run() -> Any:
        return held[1].execute(inputs)

    return Lowered(role, data, run, sum(partitions.values()), {}, nodes, [], quantized, partitions), inputs
