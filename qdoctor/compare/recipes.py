"""The recipes `qdoctor compare` can apply to a float model, and how `--recipes` selects them.

A recipe is a flow on a quantized engine ("fx-x86", "eager-qnnpack", "dynamic-fbgemm"), or the fp32 baseline. Each
flow (qdoctor.flows) declares its recipes, builds them (the same builders verified fixes use, on copies) and says
how they run; this module is the catalog and the selection.
"""

from __future__ import annotations

import contextlib
import copy
import os
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from qdoctor.compare.result import FP32
from qdoctor.diagnose.crash_causes import backend_error
from qdoctor.facts import Environment, SourceLocation
from qdoctor.facts.location import deepest_frame, display_path, first_line
from qdoctor.flows import BuildInputs, Built, Flow, Recipe, SkipRecipe, all_flows

__all__ = ["ENGINES", "BuildInputs", "Recipe", "SkipRecipe", "build", "catalog", "select", "unavailable"]

ENGINES = ("x86", "fbgemm", "qnnpack", "onednn")
FP32_RECIPE = Recipe(FP32, None, None, "fp32 (no quantization)")


def _recipe_flows() -> list[Flow]:
    """The flows with recipes, in catalog order."""
    return sorted((f for f in all_flows() if f.recipes(ENGINES)), key=lambda f: f.recipe_rank)


def flow_name(recipe: Recipe) -> str:
    """The recipe's flow by name (compare's JSON ``flow``; "fp32" for the baseline)."""
    return recipe.flow.name if recipe.flow is not None else FP32


def catalog() -> list[Recipe]:
    recipes = [FP32_RECIPE]
    for flow in _recipe_flows():
        recipes += flow.recipes(ENGINES)
    return recipes


def slow_recipes() -> dict[str, str]:
    """Recipes not run unless asked for, and why (torch.compile takes tens of seconds on a ResNet)."""
    return {r.name: f.slow_reason for f in _recipe_flows() if f.slow_reason for r in f.recipes(ENGINES)}


def native_engine(env: Environment) -> str:
    """The engine made for this CPU: x86 (fbgemm + oneDNN) on x86, qnnpack on ARM."""
    preferred = ("qnnpack",) if env.is_arm else ("x86", "fbgemm", "onednn", "qnnpack")
    return next(
        (e for e in preferred if e in env.supported_engines),
        env.supported_engines[0] if env.supported_engines else "x86",
    )


def default_names(env: Environment) -> list[str]:
    """fp32, then each flow's default recipes (dynamic and eager on the native engine; FX on every engine)."""
    native = native_engine(env)
    return [FP32] + [name for flow in _recipe_flows() for name in flow.default_recipes(native, ENGINES)]


def select(spec: str | None, env: Environment) -> tuple[list[Recipe], dict[str, str]]:
    """Recipes named by ``--recipes`` (names, flows, "default", "all"; comma-separated), fp32 always first, and the
    slow recipes left out with the reason. Raises ValueError on an unknown name."""
    everything = catalog()
    by_name = {r.name: r for r in everything}
    flows = [FP32] + [f.name for f in _recipe_flows()]
    tokens = [t.strip().lower() for t in (spec or "default").split(",") if t.strip()] or ["default"]
    chosen: list[str] = []
    for token in tokens:
        if token == "all":
            names = list(by_name)
        elif token == "default":
            names = default_names(env)
        elif token in flows:
            names = [r.name for r in everything if flow_name(r) == token]
        elif token in by_name:
            names = [token]
        else:
            raise ValueError(
                f"unknown recipe {token!r}; use default, all, a flow ({', '.join(flows)}) or one of: "
                + ", ".join(by_name)
            )
        chosen += [n for n in names if n not in chosen]
    if FP32 not in chosen:
        chosen.insert(0, FP32)
    chosen.sort(key=lambda n: n != FP32)
    not_run = {name: why for name, why in slow_recipes().items() if name not in chosen}
    return [by_name[n] for n in chosen], not_run


def unavailable(recipe: Recipe, env: Environment) -> str | None:
    """Why a recipe cannot run on this machine or torch build, before anything is built; None when it can."""
    return recipe.flow.unavailable(recipe, env) if recipe.flow is not None else None


# ------------------------------------------------------------------------------------------------------ building


def build(recipe: Recipe, given: BuildInputs) -> Built:
    if recipe.flow is None:
        return Built(copy.deepcopy(given.float_model).eval(), "", ["no quantization"], "model = float_model.eval()")
    return recipe.flow.build_recipe(recipe, given)


def runtime(recipe: Recipe, built: Built) -> AbstractContextManager[None]:
    """What must be in force while the built model runs: the flow's (its engine, or PT2E's Inductor freezing)."""
    return recipe.flow.runtime(built) if recipe.flow is not None else contextlib.nullcontext()


def model_bytes(recipe: Recipe, built: Built) -> int:
    from qdoctor.gather.size import serialized_bytes

    counted = recipe.flow.model_bytes(built) if recipe.flow is not None else None
    return counted if counted is not None else serialized_bytes(built.model)


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
