"""FX graph mode static int8 (prepare_fx / convert_fx): a symbolically traced GraphModule; prepare_fx fuses and
places quantize/dequantize by itself, and a layer stays float with ``qconfig_mapping.set_module_name(name, None)``.
Its reference form (``convert_to_reference_fx``) keeps q/dq around float ops."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from qdoctor.facts import FlowKind
from qdoctor.flows import fallback_rebuild, register
from qdoctor.flows._base import (
    REFERENCE,
    Batches,
    BuildInputs,
    Built,
    CodeNames,
    Flow,
    RebuildInputs,
    RebuildPlan,
    Recipe,
)
from qdoctor.flows._building import calibrate, default_qconfig, qconfig_code, quiet_build
from qdoctor.introspect.flow import ModelFlow
from qdoctor.introspect.state import quantized_engine


def static_fx(
    float_model: nn.Module,
    inputs: tuple[object, ...],
    engine: str,
    batches: Batches,
    *,
    qconfig_engine: str | None = None,
    calibrate_model: bool = True,
    convert: bool = True,
    names: CodeNames | None = None,
    float_layers: Sequence[str] = (),
    weight_per_channel: bool | None = None,
) -> Built:
    """FX graph mode static int8: prepare_fx places the stubs and fuses by itself.

    ``qconfig_engine``, ``calibrate_model``, ``convert``, ``float_layers`` and ``weight_per_channel`` as in
    eager.static_eager (FX keeps a layer in float with ``qconfig_mapping.set_module_name(name, None)``).
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    qconfig_engine = qconfig_engine or engine
    with quiet_build(), quantized_engine(engine):
        model = copy.deepcopy(float_model).eval()
        mapping = get_default_qconfig_mapping(qconfig_engine)
        if weight_per_channel is not None:
            mapping = mapping.set_global(default_qconfig(qconfig_engine, weight_per_channel))
        for name in float_layers:
            mapping = mapping.set_module_name(name, None)
        prepared = prepare_fx(model, mapping, example_inputs=tuple(inputs))
        if calibrate_model:
            calibrate(prepared, batches)
        quantized = convert_fx(prepared) if convert else prepared
    n = names or CodeNames()
    lines = [
        "from torch.ao.quantization import get_default_qconfig_mapping",
        "from torch.ao.quantization.quantize_fx import prepare_fx, convert_fx",
        f'torch.backends.quantized.engine = "{engine}"',
    ]
    mapping_code = f'get_default_qconfig_mapping("{qconfig_engine}")'
    if weight_per_channel is not None or float_layers:
        lines.append(f"qconfig_mapping = {mapping_code}")
        mapping_code = "qconfig_mapping"
    if weight_per_channel is not None:
        lines.append(f"qconfig_mapping.set_global({qconfig_code(qconfig_engine, weight_per_channel)})")
    lines += [f'qconfig_mapping.set_module_name("{name}", None)  # keep it in float' for name in float_layers]
    lines.append(f"{n.prepared} = prepare_fx({n.float_model}.eval(), {mapping_code}, {n.example_inputs})")
    if calibrate_model:
        lines.append(n.calibration_loop())
    lines.append(
        f"{n.quantized_model} = convert_fx({n.prepared})" if convert else f"{n.quantized_model} = {n.prepared}"
    )
    steps = [
        "FX prepare_fx (fuses, places q/dq)",
        f"qconfig mapping '{qconfig_engine}', engine '{engine}'" if qconfig_engine != engine else f"engine '{engine}'",
        f"calibrated on {len(batches)} batch(es)" if calibrate_model else "not calibrated",
        "convert_fx" if convert else "not converted",
    ]
    if float_layers:
        steps.insert(1, f"kept in float: {', '.join(float_layers)}")
    return Built(quantized, engine, steps, "\n".join(lines))


@register
class FxFlow(Flow):
    kind = FlowKind(
        "fx",
        "FX graph mode (prepare_fx / convert_fx)",
        prepare_step="FX prepare_fx",
        prepare_qat_step="FX QAT (prepare_qat_fx)",
        convert_code=(
            "from torch.ao.quantization.quantize_fx import convert_fx\n"
            "{model} = convert_fx({model})  # after calibrating the prepared GraphModule"
        ),
        convert_qat_code=(
            "from torch.ao.quantization.quantize_fx import convert_fx\n"
            "{model}.eval()  # after QAT training\n"
            "{model} = convert_fx({model})  # after calibrating the prepared GraphModule"
        ),
    )
    priority = 30
    plan_fields = frozenset(
        {
            "engine",
            "qconfig_engine",
            "calibrate",
            "convert",
            "threads",
            "float_layers",
            "weight_per_channel",
            "calibration_skip",
        }
    )
    reference_stage = REFERENCE
    recipe_rank = 3

    def matches(self, look: ModelFlow) -> bool:
        return not look.script and look.graph is not None  # a torch-level graph: PT2E (aten) is asked first

    def rebuilt_by(self, look: ModelFlow) -> Flow | None:
        # behind torch.compile qdoctor sees the compiled module, not the GraphModule it was traced into
        return fallback_rebuild(look) if look.compiled else self

    def rebuild(self, plan: RebuildPlan, given: RebuildInputs) -> Built:
        return static_fx(
            given.float_model,
            given.inputs,
            plan.engine,
            given.batches,
            qconfig_engine=plan.qconfig_engine,
            calibrate_model=plan.calibrate,
            convert=plan.convert,
            names=given.names,
            float_layers=plan.float_layers,
            weight_per_channel=plan.weight_per_channel,
        )

    def recipes(self, engines: Sequence[str]) -> list[Recipe]:
        return [Recipe(f"fx-{e}", self, e, f"static int8, FX graph mode, {e} engine") for e in engines]

    def default_recipes(self, native: str, engines: Sequence[str]) -> list[str]:
        return [f"fx-{e}" for e in engines]  # the backend comparison

    def build_recipe(self, recipe: Recipe, given: BuildInputs) -> Built:
        return static_fx(given.float_model, given.inputs, recipe.engine or "x86", given.batches)
