"""The recipes `qdoctor compare` can apply to a float model, and how `--recipes` selects them.

A recipe is a flow (fp32, dynamic, eager, fx, pt2e) on a quantized engine: "fx-x86", "eager-qnnpack",
"dynamic-fbgemm". Builders come from qdoctor.prescribe.quantize (the same ones verified fixes use) and work on copies.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qdoctor.compare.result import FP32
from qdoctor.diagnose.crash_causes import backend_error
from qdoctor.facts import Environment, SourceLocation
from qdoctor.facts.location import deepest_frame, display_path, first_line
from qdoctor.introspect.state import quiet
from qdoctor.prescribe import quantize as Q

ENGINES = ("x86", "fbgemm", "qnnpack", "onednn")
FLOWS = ("fp32", "dynamic", "eager", "fx", "pt2e")
PT2E_RECIPE = "pt2e-x86"
# Not run unless asked for: torch.compile takes tens of seconds on a ResNet, more than the rest of a compare.
SLOW_RECIPES = {PT2E_RECIPE: "compiles with torch.compile (tens of seconds for a ResNet); select it with --recipes all"}


class SkipRecipe(Exception):
    """The recipe does not apply to this model; the message says why."""


@dataclass(frozen=True)
class Recipe:
    name: str
    flow: str
    engine: str | None
    title: str


@dataclass
class BuildInputs:
    float_model: nn.Module
    inputs: tuple[Any, ...]
    batches: list[tuple[Any, ...]]  # calibration batches
    vnni: bool = True  # the CPU has int8 dot-product instructions (PT2E reduces the range without them)


def catalog() -> list[Recipe]:
    recipes = [Recipe(FP32, "fp32", None, "fp32 (no quantization)")]
    recipes += [Recipe(f"dynamic-{e}", "dynamic", e, f"dynamic int8, {e} engine") for e in ENGINES]
    recipes += [Recipe(f"eager-{e}", "eager", e, f"static int8, eager mode, {e} engine") for e in ENGINES]
    recipes += [Recipe(f"fx-{e}", "fx", e, f"static int8, FX graph mode, {e} engine") for e in ENGINES]
    recipes.append(Recipe(PT2E_RECIPE, "pt2e", "x86", "static int8, PT2E X86InductorQuantizer + torch.compile"))
    return recipes


def native_engine(env: Environment) -> str:
    """The engine made for this CPU: x86 (fbgemm + oneDNN) on x86, qnnpack on ARM."""
    preferred = ("qnnpack",) if env.is_arm else ("x86", "fbgemm", "onednn", "qnnpack")
    return next(
        (e for e in preferred if e in env.supported_engines),
        env.supported_engines[0] if env.supported_engines else "x86",
    )


def default_names(env: Environment) -> list[str]:
    """fp32; dynamic and eager on the native engine; FX on every engine (the backend comparison)."""
    native = native_engine(env)
    return [FP32, f"dynamic-{native}", f"eager-{native}"] + [f"fx-{e}" for e in ENGINES]


def select(spec: str | None, env: Environment) -> tuple[list[Recipe], dict[str, str]]:
    """Recipes named by ``--recipes`` (names, flows, "default", "all"; comma-separated), fp32 always first, and the
    slow recipes left out with the reason. Raises ValueError on an unknown name."""
    everything = catalog()
    by_name = {r.name: r for r in everything}
    tokens = [t.strip().lower() for t in (spec or "default").split(",") if t.strip()] or ["default"]
    chosen: list[str] = []
    for token in tokens:
        if token == "all":
            names = list(by_name)
        elif token == "default":
            names = default_names(env)
        elif token in FLOWS:
            names = [r.name for r in everything if r.flow == token]
        elif token in by_name:
            names = [token]
        else:
            raise ValueError(
                f"unknown recipe {token!r}; use default, all, a flow ({', '.join(FLOWS)}) or one of: "
                + ", ".join(by_name)
            )
        chosen += [n for n in names if n not in chosen]
    if FP32 not in chosen:
        chosen.insert(0, FP32)
    chosen.sort(key=lambda n: n != FP32)
    not_run = {name: why for name, why in SLOW_RECIPES.items() if name not in chosen}
    return [by_name[n] for n in chosen], not_run


def unavailable(recipe: Recipe, env: Environment) -> str | None:
    """Why a recipe cannot run on this machine or torch build, before anything is built; None when it can."""
    if recipe.flow == "pt2e":
        from qdoctor.compare import pt2e

        return pt2e.unavailable(env)
    if recipe.engine is not None and recipe.engine not in env.supported_engines:
        return (
            f"engine '{recipe.engine}' is not in torch.backends.quantized.supported_engines "
            f"{env.supported_engines} of this torch build"
        )
    return None


# ------------------------------------------------------------------------------------------------------ building


def build(recipe: Recipe, given: BuildInputs) -> Q.Built:
    builders: dict[str, Callable[[Recipe, BuildInputs], Q.Built]] = {
        "fp32": _fp32,
        "dynamic": _dynamic,
        "eager": _eager,
        "fx": _fx,
        "pt2e": _pt2e,
    }
    return builders[recipe.flow](recipe, given)


def runtime(recipe: Recipe, built: Q.Built) -> AbstractContextManager[None]:
    """What must be in force while the built model runs: its engine (packed weights belong to it), or for PT2E
    Inductor freezing (without it the compiled model keeps its q/dq reference pattern)."""
    if recipe.flow == "pt2e":
        from qdoctor.compare import pt2e

        return pt2e.runtime()
    if built.engine:
        return Q.quantized_engine(built.engine)
    return contextlib.nullcontext()


def model_bytes(recipe: Recipe, built: Q.Built) -> int:
    if recipe.flow == "pt2e":
        from qdoctor.compare import pt2e

        return pt2e.graph_bytes(built.model)
    from qdoctor.gather.size import serialized_bytes

    return serialized_bytes(built.model)


def _fp32(recipe: Recipe, given: BuildInputs) -> Q.Built:
    return Q.Built(copy.deepcopy(given.float_model).eval(), "", ["no quantization"], "model = float_model.eval()")


def _dynamic(recipe: Recipe, given: BuildInputs) -> Q.Built:
    present = {type(m) for m in given.float_model.modules()}
    if not any(t in present for t in Q.DYNAMIC_TYPES):
        raise SkipRecipe(
            "no nn.Linear, LSTM or GRU layers: dynamic quantization would leave the model unchanged "
            "(it quantizes only those)"
        )
    return Q.dynamic(given.float_model, recipe.engine or "x86")


def _fx(recipe: Recipe, given: BuildInputs) -> Q.Built:
    return Q.static_fx(given.float_model, given.inputs, recipe.engine or "x86", given.batches)


def _pt2e(recipe: Recipe, given: BuildInputs) -> Q.Built:
    from qdoctor.compare import pt2e

    return pt2e.build(given.float_model, given.inputs, given.batches, vnni=given.vnni)


def _eager(recipe: Recipe, given: BuildInputs) -> Q.Built:
    """Eager static int8 where the model is eager-ready: it has its own QuantStub (e.g. torchvision's
    ``models.quantization.*``), or wrapping the whole model in QuantWrapper gives a model that runs.

    A quick probe (calibrated on one batch) finds out before paying for the full calibration: eager int8 cannot run
    tensor arithmetic (``out += identity``) on quantized tensors without FloatFunctional, which FX inserts by itself.
    """
    engine = recipe.engine or "x86"
    own_stubs = Q.has_quant_stub(given.float_model)
    if not own_stubs and len(given.inputs) != 1:
        raise SkipRecipe(
            f"the model takes {len(given.inputs)} inputs and has no QuantStub of its own; QuantWrapper wraps a "
            "single input. Use the fx recipes (they place the stubs)"
        )
    probe = Q.static_eager(given.float_model, given.inputs, engine, given.batches[:1])
    try:
        with Q.quantized_engine(engine), torch.no_grad(), quiet():
            probe.model(*given.inputs)
    except Exception as exc:
        explanation = explain_eager_failure(exc)
        if own_stubs:
            raise RuntimeError(
                f"the model has its own QuantStub but its eager int8 version raised: {explanation}"
            ) from exc
        raise SkipRecipe(f"the model cannot simply be wrapped with QuantStub/DeQuantStub: {explanation}") from None
    del probe
    return Q.static_eager(given.float_model, given.inputs, engine, given.batches)


_TORCH_DIR = str(Path(torch.__file__).resolve().parent) + os.sep  # the separator keeps torchvision/ out


def _code_frame(exc: BaseException) -> SourceLocation | None:
    """The deepest frame outside torch itself: the model's own line that raised (user or torchvision code)."""
    return deepest_frame(exc.__traceback__, lambda file: not str(Path(file).resolve()).startswith(_TORCH_DIR))


def explain_eager_failure(exc: BaseException) -> str:
    """One sentence: which op met a tensor of the wrong kind, at which line of the model, and what to do."""
    message = first_line(str(exc)) or type(exc).__name__
    frame = _code_frame(exc)
    where = f" at {display_path(frame.file)}:{frame.line} `{frame.code}`" if frame else ""
    backend = backend_error(message)
    if backend is not None and backend.backend == "QuantizedCPU":
        hint = ""
        if frame is not None and f"torchvision{os.sep}models{os.sep}" in frame.file:
            hint = " (torchvision.models.quantization has eager-ready versions of several torchvision models)"
        return (
            f"{backend.op} received a quantized tensor{where}. Eager mode needs nn.quantized.FloatFunctional "
            f"for tensor arithmetic (+, *, cat) and DeQuantStub before float-only ops; the fx recipes insert both{hint}"
        )
    if backend is not None:
        return f"{backend.op} received a float tensor{where}: a QuantStub is missing before it"
    return f"{type(exc).__name__}{where}: {message[:300]}"
