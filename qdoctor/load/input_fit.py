"""Do the example inputs fit the model? Run it once and, when they do not, name the layer that rejected them.

Inputs of the wrong shape (or dtype) are the user's mistake, not a quantization defect: qdoctor says so in one line
(exit 2) instead of reporting a crash. The probe is the float baseline when there is one (a float model rejects bad
inputs with clear messages), else the subject. A crash that is not about the inputs' shape is left to the trace, where
it is a fact for the rules (e.g. a quantized kernel given a float tensor).
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qdoctor.errors import InputsDoNotFitError
from qdoctor.facts.location import first_line, user_frame
from qdoctor.introspect.copies import changes_when_run
from qdoctor.introspect.flow import model_flow
from qdoctor.load.loaded import LoadedTarget

# Messages that can only mean "the input does not have the shape this layer needs", whatever the model.
_SHAPE_MESSAGES = re.compile(
    r"shapes cannot be multiplied|to have \d+ channels, but got \d+ channels|Expected \d+D .*input"
    r"|but got input of size|is invalid for input of size|Kernel size can't be greater than actual input size"
    r"|must match the size of tensor|size mismatch|must be equal to input_size|packB should be equal to K"
    r"|Input shape must be|index out of range in self|Sizes of tensors must match"
)
# Dtype mismatches are the inputs' fault only in a float model: in a quantized one they are a quantization defect
# (quint8 meeting float), which the rules diagnose.
_DTYPE_MESSAGES = re.compile(
    r"must have the same dtype|expected scalar type|Input type \(\w+\) and (weight|bias) type \(\w+\) should be the same"
)


def about_arity(error: BaseException | None) -> bool:
    """The forward was called with the wrong number of arguments: the inputs' fault (qdoctor's guess, or the
    script's), not the model's."""
    message = first_line(str(error))
    return isinstance(error, TypeError) and ("positional argument" in message or "required argument" in message)


def about_shape(error: BaseException) -> bool:
    """Whether an error raised by running a model can only mean its inputs have the wrong shape (or arity)."""
    return about_arity(error) or _SHAPE_MESSAGES.search(first_line(str(error))) is not None


def _expected_shape(module: nn.Module, args: tuple[Any, ...]) -> str | None:
    """What ``module`` expects when its first argument plainly does not match it, e.g. "16 input features, got 10"."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return None
    in_features = getattr(module, "in_features", None)
    if isinstance(in_features, int) and x.shape[-1] != in_features:
        return f"{in_features} input features, got {x.shape[-1]}"
    in_channels = getattr(module, "in_channels", None)
    if isinstance(in_channels, int) and "Conv" in type(module).__name__:
        spatial = 3 if "3d" in type(module).__name__ else 1 if "1d" in type(module).__name__ else 2
        if x.dim() not in (spatial + 1, spatial + 2):
            return f"a {spatial + 2}-D input (N, C, ...), got shape {list(x.shape)}"
        if x.shape[-spatial - 1] != in_channels:
            return f"{in_channels} input channels, got {x.shape[-spatial - 1]}"
    input_size = getattr(module, "input_size", None)
    if isinstance(input_size, int) and hasattr(module, "hidden_size") and x.shape[-1] != input_size:
        return f"input_size {input_size}, got {x.shape[-1]}"
    num_embeddings = getattr(module, "num_embeddings", None)
    if isinstance(num_embeddings, int) and not x.is_floating_point() and x.numel() and int(x.max()) >= num_embeddings:
        return f"token ids below {num_embeddings}, got {int(x.max())}"
    return None


def _shape(inputs: tuple[Any, ...]) -> str:
    shapes = ["x".join(map(str, t.shape)) or "scalar" for t in inputs if isinstance(t, torch.Tensor)]
    return ", ".join(shapes) or "no tensors"


def _user_line(error: BaseException, user_file: str | None) -> str:
    """ " at model.py:12" for the deepest frame of the user's file in the error's traceback, else ""."""
    found = user_frame(error.__traceback__, user_file)
    return f" at {Path(found.file).name}:{found.line}" if found else ""


def check_inputs_fit(
    probe: nn.Module,
    probe_name: str,
    inputs: tuple[Any, ...],
    inputs_name: str,
    probe_is_float: bool,
    user_file: str | None = None,
) -> None:
    """Raise InputsDoNotFitError (a TargetError) naming the rejecting layer when ``probe`` (run once, on a copy, in
    eval mode) fails on ``inputs`` because of their shape or dtype. Any other outcome returns quietly."""
    try:
        model = probe if not changes_when_run(probe) else copy.deepcopy(probe).eval()
    except Exception:  # a model that cannot be copied is not probed: running it would change it
        return
    stack: list[tuple[str, nn.Module, tuple[Any, ...]]] = []
    failed_at: list[tuple[str, nn.Module, tuple[Any, ...]]] = []
    handles = []
    for path, module in model.named_modules():

        def pre(mod: nn.Module, args: tuple, *, _path: str = path) -> None:
            stack.append((_path, mod, args))

        def post(mod: nn.Module, args: tuple, output: Any) -> None:
            if stack:
                stack.pop()

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model(*inputs)
            except Exception as exc:
                if stack:
                    failed_at.append(stack[-1])
                error = exc
            else:
                return
    finally:
        for handle in handles:
            handle.remove()
    message = first_line(str(error)) or type(error).__name__
    path, module, args = failed_at[0] if failed_at else ("", model, inputs)
    expected = _expected_shape(module, args) if path else None
    about_shape = expected is not None or _SHAPE_MESSAGES.search(message) is not None
    about_dtype = probe_is_float and _DTYPE_MESSAGES.search(message) is not None and "qint" not in message
    if not (about_shape or about_dtype):
        return
    where = f"layer `{path}` ({type(module).__name__})" if path else f"the forward() of `{probe_name}`"
    where += _user_line(error, user_file)
    detail = f"expects {expected}" if expected else f"{type(error).__name__}: {message[:200]}"
    raise InputsDoNotFitError(f"{inputs_name} ({_shape(inputs)}) do not fit the model: {where} rejected them: {detail}")


def check_loaded_inputs(loaded: LoadedTarget) -> None:
    """Wrong-shape inputs are bad input (one line, exit 2), not a crash to diagnose. The probe is the float baseline
    when there is one, else the subject."""
    target = loaded.target
    if target.inputs_inferred:
        described = "the input qdoctor made up (define `example_inputs`)"
    else:
        described = f"`{target.inputs_name}`" if target.inputs_name else "the arguments the script passed"
    if loaded.float_baseline is not None:
        probe, probe_name = loaded.float_baseline, target.float_name or "float_model"
    else:
        probe, probe_name = loaded.subject, target.subject_name or "model"
    from qdoctor.introspect.kinds import eager_module

    if isinstance(probe, torch.jit.ScriptModule) or eager_module(probe) is not probe:
        return  # TorchScript takes no Python hooks and a compiled module would compile again: the trace decides
    check_inputs_fit(probe, probe_name, loaded.inputs, described, model_flow(probe).level == 0, target.file)
