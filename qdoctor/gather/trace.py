"""Execution trace: run the subject once and record, in call order, what each leaf module and each torch function
called between modules received and returned (quantized or float, dtype, shape).

This is how qdoctor knows where int8 meets float: a float tensor reaching a quantized conv, a quantized tensor
reaching a float op or the output, a torch.add on quantized tensors in the user's forward().
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from qdoctor.facts import SourceLocation, TensorInfo, Trace, TraceEvent
from qdoctor.facts.location import crash_info, user_frame
from qdoctor.introspect.copies import runnable
from qdoctor.introspect.kinds import is_effective_leaf

# Tensor methods and functions that are bookkeeping, not compute: not worth an event.
_IGNORED_FUNCTIONS = {
    "size",
    "dim",
    "numel",
    "__len__",
    "__get__",
    "__set__",
    "shape",
    "dtype",
    "device",
    "is_quantized",
    "q_scale",
    "q_zero_point",
    "qscheme",
    "element_size",
    "stride",
    "is_contiguous",
    "__format__",
    "__repr__",
    "__bool__",
    "__index__",
    "__int__",
    "__float__",
    "item",
    "tolist",
    "__iter__",
    "__hash__",
    "__eq__",
    "requires_grad",
    "grad_fn",
    "is_floating_point",
    "__getitem__",
    "__contains__",
    "__reduce_ex__",
    "__deepcopy__",
    "data_ptr",
    "untyped_storage",
    "storage_offset",
    "_is_view",
    "ndim",
    "layout",
    "is_sparse",
}


def tensor_infos(value: Any) -> list[TensorInfo]:
    """Every tensor inside a (nested) value."""
    found: list[TensorInfo] = []

    def visit(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            found.append(TensorInfo(str(v.dtype), list(v.shape), bool(v.is_quantized)))
        elif isinstance(v, (list, tuple)):
            for item in v:
                visit(item)
        elif isinstance(v, dict):
            for item in v.values():
                visit(item)

    visit(value)
    return found


def _function_name(func: Any) -> str:
    # torch.ops.quantized.add (what QFunctional.add calls) is named "add" like torch.add: keep its namespace, so an
    # int8 kernel call ("quantized::add") is told apart from an aten call on int8 tensors.
    qualified = getattr(func, "_qualified_op_name", None)  # OpOverloadPacket
    if isinstance(qualified, str):
        return qualified
    schema = getattr(func, "_schema", None)  # OpOverload
    if schema is not None and isinstance(getattr(schema, "name", None), str):
        return schema.name
    name = getattr(func, "__name__", None) or repr(func)
    owner = getattr(func, "__objclass__", None) or getattr(func, "__self__", None)
    if isinstance(owner, type) and owner.__name__ in ("Tensor", "TensorBase", "_TensorBase"):
        return f"Tensor.{name}"
    return name


class _Recorder(TorchFunctionMode):
    def __init__(self, user_file: str | None) -> None:
        super().__init__()
        self.events: list[TraceEvent] = []
        self.module_stack: list[tuple[str, bool]] = []  # (path, is_leaf)
        self.user_file = user_file

    def _user_line(self) -> SourceLocation | None:
        return user_frame(sys._getframe(2), self.user_file) if self.user_file else None

    def __torch_function__(self, func: Any, types: Iterable[type], args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        inside_leaf = bool(self.module_stack) and self.module_stack[-1][1]
        name = _function_name(func)
        short = name.rsplit(".", 1)[-1]
        if inside_leaf or short in _IGNORED_FUNCTIONS or short.startswith("_"):
            return func(*args, **kwargs)
        inputs = tensor_infos((args, kwargs))
        if not inputs:
            return func(*args, **kwargs)
        event = TraceEvent(
            kind="function",
            name=name,
            module=self.module_stack[-1][0] if self.module_stack else "",
            type="function",
            inputs=inputs,
            outputs=[],
            source=self._user_line(),
        )
        self.events.append(event)
        result = func(*args, **kwargs)
        event.outputs = tensor_infos(result)
        return result


def trace_model(model: nn.Module, inputs: tuple[Any, ...], user_file: str | None) -> Trace:
    """Run ``model`` (a copy when running it would change it) once under no_grad, recording leaf modules and torch
    functions between them."""
    subject = runnable(model)
    recorder = _Recorder(user_file)
    handles = []
    by_module: dict[int, TraceEvent] = {}

    for path, module in subject.named_modules():
        is_leaf = is_effective_leaf(module)
        kind_name = type(module).__name__

        def pre(
            mod: nn.Module, args: tuple, *, _path: str = path, _leaf: bool = is_leaf, _type: str = kind_name
        ) -> None:
            recorder.module_stack.append((_path, _leaf))
            if _leaf:
                event = TraceEvent(
                    kind="module", name=_path, module=_path, type=_type, inputs=tensor_infos(args), outputs=[]
                )
                recorder.events.append(event)
                by_module[id(mod)] = event

        def post(mod: nn.Module, args: tuple, output: Any, *, _leaf: bool = is_leaf) -> None:
            if recorder.module_stack:
                recorder.module_stack.pop()
            if _leaf and id(mod) in by_module:
                by_module.pop(id(mod)).outputs = tensor_infos(output)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    output: Any = None
    crash = None
    try:
        with torch.no_grad(), recorder:
            output = subject(*inputs)
    except Exception as exc:
        running = recorder.module_stack[-1][0] if recorder.module_stack else None
        crash = crash_info(exc, "run", user_file, module=running)
    finally:
        for handle in handles:
            handle.remove()
    return Trace(events=recorder.events, output=tensor_infos(output) if crash is None else [], crash=crash)
