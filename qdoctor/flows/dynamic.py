"""Eager dynamic int8 (torch.ao.quantization.quantize_dynamic): int8 weights for Linear/LSTM/GRU layers, activations
quantized on the fly at run time: nothing to calibrate, no stubs, no fusion, no convert step."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from qdoctor.facts import FlowKind
from qdoctor.flows import register
from qdoctor.flows._base import BuildInputs, Built, CodeNames, Flow, RebuildInputs, RebuildPlan, Recipe, SkipRecipe
from qdoctor.flows._building import quiet_build
from qdoctor.introspect.flow import ModelFlow
from qdoctor.introspect.state import quantized_engine

DYNAMIC_TYPES = (nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell)


def dynamic(
    float_model: nn.Module,
    engine: str,
    types: Sequence[type] | None = None,
    *,
    names: CodeNames | None = None,
    float_layers: Sequence[str] = (),
) -> Built:
    """Dynamic int8 (weights int8, activations quantized on the fly) for the layer types present; the modules at
    ``float_layers`` stay float."""
    from torch.ao import quantization as tq

    present = {type(m) for m in float_model.modules()}
    chosen = set(types) if types is not None else {t for t in DYNAMIC_TYPES if t in present} or {nn.Linear}
    with quiet_build(), quantized_engine(engine):
        spec: Any = chosen
        if float_layers:
            spec = dict[Any, Any]({t: tq.default_dynamic_qconfig for t in chosen})
            spec.update({path: None for path in float_layers})
        quantized = tq.quantize_dynamic(copy.deepcopy(float_model).eval(), spec, dtype=torch.qint8)
    names_text = ", ".join(sorted(f"nn.{t.__name__}" for t in chosen))
    n = names or CodeNames()
    if float_layers:
        entries = [f"{t}: torch.ao.quantization.default_dynamic_qconfig" for t in names_text.split(", ")]
        entries += [f'"{path}": None' for path in float_layers]
        spec_text = "{" + ", ".join(entries) + "}"
    else:
        spec_text = "{" + names_text + "}"
    code = (
        f'torch.backends.quantized.engine = "{engine}"\n'
        f"{n.quantized_model} = torch.ao.quantization.quantize_dynamic({n.float_model}.eval(), {spec_text}, "
        "dtype=torch.qint8)"
    )
    steps = [f"dynamic int8 for {names_text}", f"engine '{engine}'"]
    if float_layers:
        steps.insert(1, f"kept in float: {', '.join(float_layers)}")
    return Built(quantized, engine, steps, code)


@register
class DynamicFlow(Flow):
    kind = FlowKind("dynamic", "eager dynamic quantization (quantize_dynamic)")
    priority = 50  # before eager: a dynamic model holds eager kinds too
    static = False
    fuses_itself = False
    plan_fields = frozenset({"engine", "threads", "dynamic_types", "float_layers"})
    recipe_rank = 1

    def matches(self, look: ModelFlow) -> bool:
        return look.graph is None and not look.script and look.dynamic_only

    def rebuild(self, plan: RebuildPlan, given: RebuildInputs) -> Built:
        by_name = {t.__name__: t for t in DYNAMIC_TYPES}
        types = [by_name[n] for n in plan.dynamic_types if n in by_name] or None
        return dynamic(given.float_model, plan.engine, types, names=given.names, float_layers=plan.float_layers)

    def recipes(self, engines: Sequence[str]) -> list[Recipe]:
        return [Recipe(f"dynamic-{e}", self, e, f"dynamic int8, {e} engine") for e in engines]

    def default_recipes(self, native: str, engines: Sequence[str]) -> list[str]:
        return [f"dynamic-{native}"]

    def build_recipe(self, recipe: Recipe, given: BuildInputs) -> Built:
        present = {type(m) for m in given.float_model.modules()}
        if not any(t in present for t in DYNAMIC_TYPES):
            raise SkipRecipe(
                "no nn.Linear, LSTM or GRU layers: dynamic quantization would leave the model unchanged "
                "(it quantizes only those)"
            )
        return dynamic(given.float_model, recipe.engine or "x86")
