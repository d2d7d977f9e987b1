"""Pick what to check from a script's globals: the subject (the model to check), its float baseline and the example
inputs, by the contract names first, else by what the globals hold; infer inputs from the first layer when the
script gives none."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from qdoctor.errors import NoModelError, ScriptFailedError, TargetError
from qdoctor.facts import INPUTS_CONTRACT, INPUTS_INFERRED, INPUTS_SCRIPT, Target
from qdoctor.facts.location import first_line
from qdoctor.introspect.flow import model_flow
from qdoctor.introspect.kinds import classify
from qdoctor.load.script import BoundedText

SUBJECT_FUNCS = ("build_model",)
SUBJECT_NAMES = ("quantized_model", "model")
FLOAT_FUNCS = ("build_float_model",)
FLOAT_NAMES = ("float_model",)
INPUT_FUNCS = ("get_example_inputs",)
INPUT_NAMES = ("example_inputs",)
# Names users give their input tensors in triage scripts, most telling first.
INPUT_NAME_HINTS = ("example", "input", "dummy", "sample", "data", "img", "image", "x")


def _leaf_paths(model: nn.Module) -> set[str]:

    skip = {"observer", "fake_quant", "quant_stub", "dequant_stub"}
    paths = set()
    for name, module in model.named_modules():
        if not name or classify(module) in skip or name.endswith("activation_post_process"):
            continue
        if not any(True for _ in module.children()) or classify(module) != "container":
            paths.add(name)
    return paths


def _same_structure(a: nn.Module, b: nn.Module) -> bool:
    pa, pb = _leaf_paths(a), _leaf_paths(b)
    if not pa or not pb:
        return False
    # Fused or converted modules keep their paths; fusion replaces followers with Identity, so paths survive.
    return len(pa & pb) / len(pa | pb) >= 0.5


def call_contract(name: str, func: Callable[..., Any], target: Target, *args: Any) -> Any:
    """Call one of the script's contract functions, capturing its output and warnings like the script's own."""
    stdout, stderr = BoundedText(), BoundedText()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            warnings.simplefilter("ignore")
            return func(*args)
    except Exception as exc:
        raise TargetError(f"{name}() raised {type(exc).__name__}: {first_line(str(exc))}") from None
    finally:
        target.user_stdout += stdout.getvalue()
        target.user_stderr += stderr.getvalue()


def _modules_in(namespace: dict[str, Any]) -> list[tuple[str, nn.Module]]:
    seen: set[int] = set()
    found = []
    for name, value in namespace.items():
        if name.startswith("__") or not isinstance(value, nn.Module) or id(value) in seen:
            continue
        seen.add(id(value))
        found.append((name, value))
    return found


def pick_subject(namespace: dict[str, Any], target: Target) -> tuple[str, nn.Module]:
    for func in SUBJECT_FUNCS:
        if callable(namespace.get(func)):
            model = call_contract(func, namespace[func], target)
            if not isinstance(model, nn.Module):
                raise TargetError(f"{func}() returned {type(model).__name__}, not a torch.nn.Module")
            return f"{func}()", model
    candidates = _modules_in(namespace)
    if not candidates:
        if target.load_crash:
            c = target.load_crash
            where = f" at line {c.line}" if c.line else ""
            stdin = " (it read stdin, which qdoctor leaves empty)" if c.type == "EOFError" else ""
            text = (
                f"the script raised {c.type}{where}{stdin} before defining any nn.Module: {first_line(c.message)[:200]}"
            )
            raise ScriptFailedError(
                text, c.message, explained=text.replace("{", "{{").replace("}", "}}") + "; {hint}", crash=c
            )
        raise NoModelError("no torch.nn.Module found in the target (define `model` or `build_model()`)")
    if isinstance(namespace.get("quantized_model"), nn.Module):
        return "quantized_model", namespace["quantized_model"]
    levels = [(model_flow(m).level, i, name, m) for i, (name, m) in enumerate(candidates)]
    best = max(levels, key=lambda t: (t[0], t[1]))
    if best[0] > 0:
        return best[2], best[3]
    if isinstance(namespace.get("model"), nn.Module):
        return "model", namespace["model"]
    return best[2], best[3]  # the last float module defined: no quantization in this script


def float_copy(model: nn.Module) -> nn.Module:
    """A float copy of a prepared (observed) model: observers, their hooks and qconfigs removed."""
    from torch.ao.quantization.quantize import _remove_qconfig

    clone = copy.deepcopy(model)
    _remove_qconfig(clone)
    return clone


def copy_origins(original: nn.Module, copy_: nn.Module, origins: weakref.WeakKeyDictionary) -> None:
    """A derived float copy never ran __init__: give its modules the creation lines of the originals, by path."""
    by_path = dict(original.named_modules())
    for path, module in copy_.named_modules():
        twin = by_path.get(path)
        source = origins.get(twin) if twin is not None else None
        if source is not None:
            origins[module] = source


def pick_float(
    namespace: dict[str, Any], subject_name: str, subject: nn.Module, target: Target
) -> tuple[str | None, nn.Module | None]:
    for func in FLOAT_FUNCS:
        if callable(namespace.get(func)):
            model = call_contract(func, namespace[func], target)
            if isinstance(model, nn.Module):
                return f"{func}()", model
    for name in FLOAT_NAMES:
        if isinstance(namespace.get(name), nn.Module):
            return name, namespace[name]
    if subject_name.endswith("()"):
        return None, None
    float_like: list[tuple[int, str, nn.Module, bool]] = []
    for name, model in _modules_in(namespace):
        if model is subject:
            continue
        found = model_flow(model)
        if found.level <= 2 and _same_structure(model, subject):
            float_like.append((found.level, name, model, found.qat))
    if not float_like:
        return None, None
    level, name, model, qat = min(float_like, key=lambda t: t[0])
    if level == 2:
        # The script prepared its float model in place (observers attached): compare against a clean copy.
        if qat:
            return None, None
        target.float_derived = f"a copy of `{name}` with its observers removed (it was prepared in place)"
        return name, float_copy(model)
    return name, model


def _as_inputs(value: Any, name: str) -> tuple[Any, ...]:
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, torch.Tensor) for v in value):
        return tuple(value)
    raise TargetError(f"{name} must be a tensor or a tuple of tensors, got {type(value).__name__}")


def first_layer_input(model: nn.Module) -> tuple[torch.Tensor, str] | None:
    for path, module in model.named_modules():
        name = getattr(module, "original_name", None) if isinstance(module, torch.jit.ScriptModule) else None
        name = name or type(module).__name__
        in_ch = getattr(module, "in_channels", None)
        if isinstance(in_ch, int) and "Conv" in name:
            dims = 3 if "3d" in name else 1 if "1d" in name else 2
            spatial = {1: (128,), 2: (224, 224), 3: (16, 112, 112)}[dims]
            shape = (1, in_ch, *spatial)
        elif isinstance(getattr(module, "in_features", None), int):
            shape = (1, module.in_features)
        elif isinstance(module, nn.Embedding) or name.endswith("Embedding"):
            return torch.randint(0, module.num_embeddings, (1, 16)), f"{path or 'root'} ({name}): 1x16 token ids"
        elif isinstance(getattr(module, "input_size", None), int) and hasattr(module, "hidden_size"):
            shape = (1, 16, module.input_size) if getattr(module, "batch_first", False) else (16, 1, module.input_size)
        else:
            continue
        return torch.randn(*shape), f"{path or 'root'} ({name}): {'x'.join(map(str, shape))}"
    return None


def _accepts(model: nn.Module, inputs: tuple[Any, ...]) -> bool:
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            copy.deepcopy(model).eval()(*inputs)
        return True
    except Exception:
        return False


def pick_inputs(
    namespace: dict[str, Any], subject: nn.Module, float_baseline: nn.Module | None, target: Target
) -> tuple[Any, ...]:
    for func in INPUT_FUNCS:
        if callable(namespace.get(func)):
            target.inputs_name, target.inputs_origin = f"{func}()", INPUTS_CONTRACT
            return _as_inputs(call_contract(func, namespace[func], target), f"{func}()")
    for name in INPUT_NAMES:
        if name in namespace:
            target.inputs_name, target.inputs_origin = name, INPUTS_CONTRACT
            return _as_inputs(namespace[name], name)
    tensors = [
        (n, v)
        for n, v in namespace.items()
        if isinstance(v, torch.Tensor) and not n.startswith("_") and v.dim() >= 1 and not v.is_quantized
    ]

    def rank(item: tuple[str, torch.Tensor]) -> int:
        lowered = item[0].lower()
        return next((i for i, hint in enumerate(INPUT_NAME_HINTS) if hint in lowered), len(INPUT_NAME_HINTS))

    tensors.sort(key=rank)
    if len(tensors) == 1:
        target.inputs_name, target.inputs_origin = tensors[0][0], INPUTS_SCRIPT
        return (tensors[0][1],)
    probe = float_baseline if float_baseline is not None else subject
    for name, tensor in tensors:
        if _accepts(probe, (tensor,)):
            target.inputs_name, target.inputs_origin = name, INPUTS_SCRIPT
            return (tensor,)
    inferred = first_layer_input(float_baseline if float_baseline is not None else subject)
    if inferred is None:
        raise TargetError("no example inputs: define `example_inputs` (a tensor or tuple) or `get_example_inputs()`")
    tensor, how = inferred
    target.inputs_inferred = f"no input tensor in the script; made a random one from the first layer {how}"
    target.inputs_origin = INPUTS_INFERRED
    return (tensor,)


def optional_callable(namespace: dict[str, Any], name: str) -> Callable[..., Any] | None:
    value = namespace.get(name)
    if value is None:
        return None
    if callable(value):
        return value
    if name == "calibration_data":
        return lambda: value  # an iterable given directly
    return None


_PROBE_SIZES = (224, 112, 96, 64, 56, 32, 28, 16, 8)


def input_size_that_runs(model: nn.Module, tensor: torch.Tensor, how: str) -> tuple[torch.Tensor, str]:
    """A saved image model records no input size: try common sizes until one runs (a Linear after Flatten fixes it)."""
    if tensor.dim() != 4 or _accepts(model, (tensor,)):
        return tensor, how
    for size in _PROBE_SIZES:
        candidate = torch.randn(tensor.shape[0], tensor.shape[1], size, size)
        if _accepts(model, (candidate,)):
            shape = "x".join(map(str, candidate.shape))
            return candidate, how.rsplit(": ", 1)[
                0
            ] + f": {shape} (the first of {'/'.join(map(str, _PROBE_SIZES))} px that runs)"
    return tensor, how
