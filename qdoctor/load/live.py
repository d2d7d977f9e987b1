"""A target made of live objects (``qdoctor.check_model``): the model, its float baseline and the example inputs the
caller holds, instead of a script to run. The result is the same LoadedTarget a script gives, so the facts, rules and
verified fixes are the CLI's.

Nothing here changes the caller's objects: a float baseline prepared in place (observers attached) is replaced by a
clean copy, exactly as for a script.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qdoctor.errors import FloatSubjectError, InputsDoNotFitError, NotAModuleError, OptionError
from qdoctor.facts import Target, TensorInfo
from qdoctor.introspect.flow import model_flow
from qdoctor.load.select import copy_origins, float_copy
from qdoctor.load.target import LoadedTarget

SUBJECT_NAME = "model"
FLOAT_NAME = "float_model"
INPUTS_NAME = "example_inputs"


def _describe(value: Any) -> str:
    return f"a {type(value).__module__}.{type(value).__qualname__}"


def _require_module(value: Any, argument: str) -> nn.Module:
    if not isinstance(value, nn.Module):
        hint = " (the model, not its class: call it first)" if isinstance(value, type) else ""
        raise NotAModuleError(f"{argument} must be a torch.nn.Module, got {_describe(value)}{hint}")
    return value


def as_inputs(value: Any, argument: str = INPUTS_NAME) -> tuple[torch.Tensor, ...]:
    """A tensor or a tuple/list of tensors, as the positional arguments of ``model(*inputs)``."""
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, torch.Tensor) for v in value):
        return tuple(value)
    if isinstance(value, (tuple, list)) and value:
        wrong = next(v for v in value if not isinstance(v, torch.Tensor))
        raise InputsDoNotFitError(
            f"{argument} must be a tensor or a tuple of tensors (the arguments of model(*{argument})); "
            f"it holds {_describe(wrong)}"
        )
    raise InputsDoNotFitError(
        f"{argument} must be a tensor or a tuple of tensors (the arguments of model(*{argument})), "
        f"got {_describe(value) if not isinstance(value, (tuple, list)) else 'an empty ' + type(value).__name__}"
    )


def _library_dirs() -> list[Path]:
    import sys

    dirs = []
    for name in ("torch", "torchvision", "torchao"):
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if file:
            dirs.append(Path(file).resolve().parent)
    return dirs


def user_file(model: nn.Module) -> str | None:
    """The file that defines ``model``'s forward(), when it is the user's (a test file, a notebook cell's file):
    crashes are then pointed at its lines. None for torch's own modules and generated code (FX, export)."""
    from qdoctor.introspect.kinds import eager_module

    forward = getattr(type(eager_module(model)), "forward", None)
    code = getattr(forward, "__code__", None)
    file = getattr(code, "co_filename", None)
    if not isinstance(file, str) or file.startswith("<") or not Path(file).is_file():
        return None
    resolved = Path(file).resolve()
    if any(resolved.is_relative_to(d) for d in _library_dirs()):
        return None
    return str(resolved)


def _calibration(value: Any) -> Callable[[], Any] | None:
    if value is None:
        return None
    if callable(value):
        return value
    if isinstance(value, Iterable) and not isinstance(value, (torch.Tensor, str, bytes)):
        return lambda: value
    raise OptionError(
        f"calibration_data must be a function returning batches or an iterable of batches, got {_describe(value)}"
    )


def live_target(
    model: Any,
    example_inputs: Any,
    *,
    float_model: Any = None,
    calibration_data: Any = None,
    evaluate: Any = None,
    spec: str | None = None,
) -> LoadedTarget:
    """A LoadedTarget of objects the caller holds. Raises qdoctor.errors.TargetError subclasses on bad input:
    NotAModuleError, InputsDoNotFitError (not tensors; shapes are checked later, by running the float model once),
    FloatSubjectError (nothing in ``model`` is quantized) and OptionError."""
    subject = _require_module(model, "model")
    baseline = _require_module(float_model, "float_model") if float_model is not None else None
    inputs = as_inputs(example_inputs)
    if evaluate is not None and not callable(evaluate):
        raise OptionError(f"evaluate must be a function evaluate(model) -> accuracy, got {_describe(evaluate)}")
    subject_flow = model_flow(subject)
    if subject_flow.level == 0:
        raise FloatSubjectError(
            f"`model` ({type(subject).__name__}) is a float model: nothing in it is quantized, observed or given a "
            "qconfig, so there is nothing to diagnose. Pass the quantized model as `model` and this one as "
            "`float_model=`, or use qdoctor.compare_model() to choose a quantization recipe for it"
        )
    if baseline is subject:
        raise OptionError("`float_model` is the same object as `model`: pass the float model it was quantized from")
    file = user_file(subject)
    target = Target(
        spec=spec or f"<in-process {type(subject).__name__}>",
        file=file,
        subject_name=SUBJECT_NAME,
        float_name=None,
        inputs_name=INPUTS_NAME,
        inputs=[TensorInfo(str(t.dtype), list(t.shape), bool(t.is_quantized)) for t in inputs],
    )
    origins: weakref.WeakKeyDictionary[nn.Module, Any] = weakref.WeakKeyDictionary()
    if baseline is not None:
        found = model_flow(baseline)
        if found.level == 3:
            raise OptionError(
                f"`float_model` ({type(baseline).__name__}) is quantized: pass the float model `model` was "
                "quantized from (or leave float_model out)"
            )
        if found.level == 2:
            if found.qat:
                raise OptionError(
                    "`float_model` holds QAT modules: pass the float model before prepare_qat (or leave it out)"
                )
            # prepared in place (observers attached): compare against a clean copy, as for a script
            prepared = baseline
            baseline = float_copy(prepared)
            copy_origins(prepared, baseline, origins)
            target.float_derived = f"a copy of `{FLOAT_NAME}` with its observers removed (it was prepared in place)"
        target.float_name = FLOAT_NAME
    calibration = _calibration(calibration_data)
    target.has_calibration_data = calibration is not None
    target.has_evaluate = evaluate is not None
    namespace: dict[str, Any] = {SUBJECT_NAME: subject, INPUTS_NAME: example_inputs}
    if baseline is not None:
        namespace[FLOAT_NAME] = baseline
    if calibration_data is not None:  # the fix code calls it `calibration_data()` when it is a function
        namespace["calibration_data"] = calibration_data
    return LoadedTarget(
        target=target,
        subject=subject,
        float_baseline=baseline,
        inputs=inputs,
        namespace=namespace,
        calibration_data=calibration,
        evaluate=evaluate,
        origins=origins,
        user_engine=torch.backends.quantized.engine,
        user_num_threads=torch.get_num_threads(),
    )


def live_float_target(
    float_model: Any,
    example_inputs: Any,
    *,
    calibration_data: Any = None,
    evaluate: Any = None,
    spec: str | None = None,
) -> LoadedTarget:
    """The LoadedTarget ``qdoctor.compare_model`` quantizes: a float model (the subject, no baseline)."""
    subject = _require_module(float_model, "float_model")
    inputs = as_inputs(example_inputs)
    if evaluate is not None and not callable(evaluate):
        raise OptionError(f"evaluate must be a function evaluate(model) -> accuracy, got {_describe(evaluate)}")
    found = model_flow(subject)
    if found.level == 3 or found.qat:
        raise OptionError(
            f"`float_model` ({type(subject).__name__}) is already quantized: compare_model quantizes a float model "
            "every sensible way; pass the float model, or check this one with qdoctor.check_model()"
        )
    target = Target(
        spec=spec or f"<in-process {type(subject).__name__}>",
        file=user_file(subject),
        subject_name=FLOAT_NAME,
        float_name=None,
        inputs_name=INPUTS_NAME,
        inputs=[TensorInfo(str(t.dtype), list(t.shape), bool(t.is_quantized)) for t in inputs],
    )
    baseline = None
    if found.level > 0:  # a qconfig set or observers attached in place: quantize a clean copy, as for a script
        baseline = float_copy(subject)
        target.float_name = FLOAT_NAME
        target.float_derived = f"a copy of `{FLOAT_NAME}` without its qconfig and observers"
    calibration = _calibration(calibration_data)
    target.has_calibration_data = calibration is not None
    target.has_evaluate = evaluate is not None
    return LoadedTarget(
        target=target,
        subject=subject,
        float_baseline=baseline,
        inputs=inputs,
        namespace={FLOAT_NAME: subject, INPUTS_NAME: example_inputs},
        calibration_data=calibration,
        evaluate=evaluate,
        user_engine=torch.backends.quantized.engine,
        user_num_threads=torch.get_num_threads(),
    )
