"""Record the calls a script makes to its own models: which models it ran, how often, and with what arguments.

torch has no hook for "a model was called from outside any other model", so ``nn.Module.__call__`` is wrapped while
the script runs (as load/script.py wraps ``__init__`` to note creation lines) and restored afterwards. Only top-level
calls are recorded: the submodule calls inside a forward are not the script's. The arguments are kept as references,
whatever their structure (an LSTM's ``(x, (h, c))``, dicts, keyword arguments): per model the first call, the call
with the fewest input elements and the number of calls; nothing is copied. The called models are held (one made and
run inside a function is still the model to check), up to MAX_MODELS. The tensors the calls returned are noted
(weakly) so that selection never takes a model's own output for its input.

Calls made while torch traces a model (torch.compile, torch.export with fake tensors, FX proxies) are not the
script's own and are skipped.

A script that calls ``model.forward(x)`` directly bypasses ``__call__``: the first call seen is then a submodule's,
made inside that ``forward``. Such a call is recorded as a call of the outermost model whose own ``forward`` is running
on the stack (with that frame's arguments), once per run of that ``forward``.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree

from qdoctor import facts as F
from qdoctor.facts.location import same_file, user_frame
from qdoctor.introspect.kinds import classify


@dataclass
class Call:
    """The arguments of one call, as the script passed them (references, not copies)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    line: int | None  # the user's line that made the call, when it is in the script
    elements: int  # input elements in all tensor arguments (to tell a whole dataset from one batch)

    def tensors(self) -> list[torch.Tensor]:
        return [leaf for leaf in _pytree.tree_leaves((self.args, self.kwargs)) if isinstance(leaf, torch.Tensor)]


@dataclass
class ModelCalls:
    first: Call
    smallest: Call  # the call with the fewest input elements (the first one when they tie)
    count: int
    order: int  # when the model was first called, among all models the script called
    last: int = 0  # when it was last called, counting every recorded call of every model
    local: str | None = None  # "net (in run)": the user's function and its local name for the model, at its first call


# Called models are kept alive (a model made and run inside a function is still the one to check); a script that
# builds models in a loop keeps only the first ones.
MAX_MODELS = 32


@dataclass
class CallLog:
    """What the script ran, by model (held: see MAX_MODELS)."""

    models: dict[int, tuple[nn.Module, ModelCalls]] = field(default_factory=dict)
    outputs: dict[int, weakref.ref[torch.Tensor]] = field(default_factory=dict)  # by id: tensors compare by value
    failures: int = 0  # calls that could not be recorded (recording never changes what the script does)

    def of(self, model: nn.Module) -> ModelCalls | None:
        entry = self.models.get(id(model))
        return entry[1] if entry is not None and entry[0] is model else None

    def called(self) -> list[tuple[nn.Module, ModelCalls]]:
        """The models the script called, in the order of their first call."""
        return sorted(self.models.values(), key=lambda item: item[1].order)

    def is_output(self, value: Any) -> bool:
        """Whether ``value`` is a tensor one of the recorded calls returned (a model's output, not an input)."""
        ref = self.outputs.get(id(value)) if isinstance(value, torch.Tensor) else None
        return ref is not None and ref() is value

    def note_output(self, tensor: torch.Tensor) -> None:
        key = id(tensor)
        outputs = self.outputs

        def forget(_: weakref.ref[torch.Tensor]) -> None:  # when the tensor dies, before its id can be reused
            outputs.pop(key, None)

        outputs[key] = weakref.ref(tensor, forget)


def _elements(leaves: list[Any]) -> int:
    return sum(int(leaf.numel()) for leaf in leaves if isinstance(leaf, torch.Tensor))


# Modules that are called but are never a model to check: the observers torch's own convert runs on the weights.
_NOT_MODELS = (F.OBSERVER, F.FAKE_QUANT)


def _held_as(scope: dict[str, Any], model: nn.Module, direct: bool = True) -> str | None:
    """How ``scope`` holds ``model``, by the first of its names (in order of definition: a function's parameters, then
    its locals) that is the model (when ``direct``) or a dict, list or tuple holding it (``models['int8']``,
    ``pairs[1][1]``, one level of nesting)."""
    for name, value in scope.items():
        if not name.isidentifier() or name.startswith("_"):
            continue
        if value is model:
            if direct:
                return name
            continue
        items = (
            value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
        )
        for key, item in items:
            if item is model:
                return f"{name}[{key!r}]"
            if isinstance(item, tuple | list):
                inner = next((i for i, v in enumerate(item) if v is model), None)
                if inner is not None:
                    return f"{name}[{key!r}][{inner}]"
    return None


def _local_name(frame: Any, user_path: str, model: nn.Module) -> str | None:
    """Where the script holds a model it called: "net (in run)", the first local of the innermost function of the
    user's file that holds it (the first bound: the model's own name rather than a loop variable that later holds it);
    "models['int8']" for one a dict or list holds. None for a global (selection names those itself)."""
    while frame is not None and not same_file(frame.f_code.co_filename, user_path):
        frame = frame.f_back
    if frame is None:
        return None
    scope = frame.f_locals
    top = frame.f_code.co_name == "<module>"
    held = _held_as(scope, model, direct=not top) or (
        _held_as(frame.f_globals, model, direct=False) if not top else None
    )
    if held is None:
        return None
    return held if top else f"{held} (in {frame.f_code.co_name})"


def _forward_arguments(frame: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments a running ``forward(self, ...)`` frame was called with, from its locals (as they are now: a
    forward that rebinds an argument before its first submodule call is seen with the new value)."""
    code, values = frame.f_code, frame.f_locals
    names = code.co_varnames
    positional = [values.get(name) for name in names[1 : code.co_argcount]]
    at = code.co_argcount + code.co_kwonlyargcount
    kwargs = {name: values.get(name) for name in names[code.co_argcount : at] if name in values}
    if code.co_flags & 0x04:  # *args
        positional.extend(values.get(names[at], ()))
        at += 1
    if code.co_flags & 0x08:  # **kwargs
        kwargs.update(values.get(names[at], {}))
    return tuple(positional), kwargs


def _direct_forward(frame: Any, model: nn.Module) -> tuple[nn.Module, Any] | None:
    """The outermost model whose own ``forward`` runs in ``frame`` or above it, called directly (``m.forward(x)``, not
    through ``__call__``) and holding ``model`` as a submodule, with that forward's frame; None when there is none."""
    found = None
    while frame is not None:
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "forward" else None
        if isinstance(owner, nn.Module) and owner is not model:
            forward = getattr(type(owner), "forward", None)
            if getattr(forward, "__code__", None) is frame.f_code and any(m is model for m in owner.modules()):
                found = (owner, frame)
        frame = frame.f_back
    return found


def _traced(leaves: list[Any]) -> bool:
    """Arguments that belong to a tracer (fake tensors of torch.export, FX proxies), not to the script."""
    from torch._subclasses.fake_tensor import FakeTensor

    return any(isinstance(leaf, FakeTensor | torch.fx.Proxy) for leaf in leaves)


@contextlib.contextmanager
def recording_calls(user_file: str | None, log: CallLog) -> Iterator[CallLog]:
    """While the script runs, record into ``log`` the top-level calls of every nn.Module (see the module docstring)."""
    original_call = nn.Module.__call__
    user_path = str(Path(user_file).resolve()) if user_file else None
    depth = [0]  # module calls under way (a call from another thread meanwhile is not recorded)
    counter = [0]
    seen = [0]
    forward_runs: dict[int, int] = {}  # a directly called model -> the id of the forward frame last counted

    def record(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], caller: Any) -> None:
        direct = _direct_forward(caller, model)
        if direct is not None:  # a submodule's call inside a forward the script called directly: that model's call
            model, frame = direct
            if forward_runs.get(id(model)) == id(frame):
                return
            forward_runs[id(model)] = id(frame)
            args, kwargs = _forward_arguments(frame)
            caller = frame.f_back
        leaves = _pytree.tree_leaves((args, kwargs))
        if _traced(leaves):
            return
        elements = _elements(leaves)
        known = log.of(model)
        seen[0] += 1
        if known is not None:
            known.count += 1
            known.last = seen[0]
            if elements < known.smallest.elements:
                known.smallest = Call(args, dict(kwargs), known.first.line, elements)
            return
        if len(log.models) >= MAX_MODELS or classify(model) in _NOT_MODELS:
            return
        found = user_frame(caller, user_path) if user_path else None
        call = Call(args, dict(kwargs), found.line if found else None, elements)
        first = ModelCalls(first=call, smallest=call, count=1, order=counter[0], last=seen[0])
        first.local = _local_name(caller, user_path, model) if user_path else None
        log.models[id(model)] = (model, first)
        counter[0] += 1

    def note_outputs(output: Any) -> None:
        for leaf in _pytree.tree_leaves(output):
            if isinstance(leaf, torch.Tensor):
                with contextlib.suppress(TypeError):
                    log.note_output(leaf)

    def call(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if depth[0] or torch.compiler.is_compiling():
            return original_call(self, *args, **kwargs)
        depth[0] += 1
        try:
            try:
                record(self, args, kwargs, sys._getframe(1))
            except Exception:  # recording must never change what the script does
                log.failures += 1
            output = original_call(self, *args, **kwargs)
            with contextlib.suppress(Exception):
                note_outputs(output)
            return output
        finally:
            depth[0] -= 1

    module_class: Any = nn.Module  # patched for the duration of the script, restored below
    module_class.__call__ = call
    try:
        yield log
    finally:
        module_class.__call__ = original_call
