"""Example inputs of any structure: positional arguments that may be nested tuples, lists or dicts of tensors, and
keyword arguments bound to the forward's positional parameters, so every later stage calls ``model(*inputs)``.

Also: one batch out of a whole dataset (a script that ran thousands of rows at once), shapes described for the
report, and the Python expression that names the arguments in the script (for the fix code).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree

from qdoctor.introspect.kinds import eager_module

# A leading dimension at least this large, in a call whose other calls (if any) were no smaller, is a dataset fed at
# once rather than one batch: qdoctor profiles one batch of it (the report says so).
DATASET_ROWS = 256


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    return [leaf for leaf in _pytree.tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def bind_positional(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """``args`` and ``kwargs`` as positional arguments of ``model``'s forward (defaults fill the gaps before the last
    argument given, none after it: a wrapped forward may pass those itself, as transformers' do with ``use_cache``),
    or None when some argument can only be passed by keyword."""
    if not kwargs:
        return tuple(args)
    try:
        signature = inspect.signature(eager_module(model).forward)
        bound = signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    names = {p.name for p in positional}
    if any(name not in names for name in bound.arguments):
        return None  # *args, a keyword-only argument or **kwargs: not expressible positionally
    last = max((i for i, p in enumerate(positional) if p.name in bound.arguments), default=-1)
    values: list[Any] = []
    for p in positional[: last + 1]:
        if p.name in bound.arguments:
            values.append(bound.arguments[p.name])
        elif p.default is not inspect.Parameter.empty:
            values.append(p.default)
        else:
            return None
    return tuple(values)


def signature_misfit(function: Any, args: tuple[Any, ...]) -> str | None:
    """Why ``function(*args)`` cannot bind (``"forward(input, hidden) needs 2 arguments, got 1"``), or None when it
    binds or the signature cannot be read (TorchScript, builtins: running it decides)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args)
    except TypeError as exc:
        name = getattr(function, "__name__", "the function")
        return f"{name}{signature} cannot take {len(args)} argument{'s' if len(args) != 1 else ''}: {exc}"
    return None


def forward_misfit(model: nn.Module, args: tuple[Any, ...]) -> str | None:
    """Why ``model(*args)`` cannot bind to the forward's signature, or None (see signature_misfit)."""
    if isinstance(model, torch.jit.ScriptModule):
        return None
    return signature_misfit(eager_module(model).forward, args)


def as_arguments(model: nn.Module, value: Any) -> tuple[Any, ...] | None:
    """A script's ``example_inputs`` as positional arguments: a tensor is one argument, a tuple or list holds the
    arguments (each of any structure: ``(x, (h, c))``), a dict holds keyword arguments. None when it is none of these
    (or its keywords cannot be passed by position)."""
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, (tuple, list)) and value:
        return tuple(value)
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        return bind_positional(model, (), dict(value))
    return None


def shapes(value: Any) -> str:
    """Shapes in the structure of ``value``: "20x1x8, (1x1x8, 1x1x8)"."""
    if isinstance(value, torch.Tensor):
        return "x".join(map(str, value.shape)) or "scalar"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(shapes(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shapes(v)}" for k, v in value.items()) + "}"
    return type(value).__name__


def describe(args: tuple[Any, ...]) -> str:
    """The shapes of positional arguments, each argument's nesting in parentheses."""
    return ", ".join(shapes(a) for a in args) or "no arguments"


def dataset_rows(args: tuple[Any, ...]) -> int | None:
    """The leading dimension of the arguments when it looks like a whole dataset fed at once, else None."""
    leading = [t.shape[0] for t in tensor_leaves(args) if t.dim() >= 2]
    if not leading:
        return None
    rows = max(leading)
    return rows if rows >= DATASET_ROWS else None


def one_batch(args: tuple[Any, ...], rows: int) -> tuple[Any, ...]:
    """``args`` with every tensor whose leading dimension is ``rows`` cut to its first row (a batch of one)."""

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows:
            return value[:1]
        return value

    return tuple(_pytree.tree_map(cut, list(args)))


def expression(args: tuple[Any, ...], namespace: dict[str, Any]) -> str | None:
    """The script's own expression for ``args`` when each is a global of the script: "x", or "(inputs, hidden)"."""
    names = []
    for arg in args:
        name = next(
            (n for n, v in namespace.items() if v is arg and n.isidentifier() and not n.startswith("_")),
            None,
        )
        if name is None:
            return None
        names.append(name)
    if not names:
        return None
    return names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"
