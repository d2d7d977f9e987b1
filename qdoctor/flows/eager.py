"""Eager-mode static int8 (torch.ao.quantization prepare / convert): the user places QuantStub/DeQuantStub and fuses
Conv/BN/ReLU with fuse_modules by hand. The flow of last resort for rebuilding (flows.fallback_rebuild)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from qdoctor import facts as F
from qdoctor.facts import FlowKind
from qdoctor.flows import register
from qdoctor.flows._base import (
    Batches,
    BuildInputs,
    Built,
    CodeNames,
    Flow,
    RebuildInputs,
    RebuildPlan,
    Recipe,
    SkipRecipe,
)
from qdoctor.flows._building import (
    KEEP_IN_FLOAT_CODE,
    bn_folds,
    calibrate,
    default_qconfig,
    has_quant_stub,
    keep_in_float,
    qconfig_code,
    quiet_build,
)
from qdoctor.introspect.flow import ModelFlow
from qdoctor.introspect.state import quantized_engine, quiet

_EAGER_KINDS = {
    F.QUANTIZED,
    F.DYNAMIC_QUANTIZED,
    F.OBSERVER,
    F.FAKE_QUANT,
    F.QAT,
    F.QUANT_STUB,
    F.REFERENCE_QUANTIZED,
}


def static_eager(
    float_model: torch.nn.Module,
    engine: str,
    batches: Batches,
    *,
    groups: Sequence[Sequence[str]] = (),
    wrap: bool = True,
    qconfig_engine: str | None = None,
    calibrate_model: bool = True,
    convert: bool = True,
    train: bool = False,
    names: CodeNames | None = None,
    float_layers: Sequence[str] = (),
    weight_per_channel: bool | None = None,
) -> Built:
    """Eager-mode static int8: (wrap with stubs) -> fuse ``groups`` -> qconfig for ``engine`` -> prepare -> calibrate
    -> convert.

    The keyword switches rebuild a model the way a script got it wrong, for verified fixes: ``groups`` fuses exactly
    those module groups (the traced plan: qdoctor.prescribe.recipe.fusion_plan), ``qconfig_engine`` takes another
    backend's default qconfig, ``calibrate_model=False`` converts observers that saw no data, ``convert=False``
    returns the prepared model, ``train=True`` builds and returns it in training mode (BatchNorm cannot be folded
    then), ``float_layers`` keeps those modules in float (QD020's fix), ``weight_per_channel`` picks the weight
    observer (QD021).
    """
    from torch.ao import quantization as tq

    qconfig_engine = qconfig_engine or engine
    steps = []
    with quiet_build(), quantized_engine(engine):
        model = copy.deepcopy(float_model)
        model.train(train)
        plan = [list(g) for g in groups]
        if train:  # fuse_modules folds BatchNorm with eval statistics only
            plan = [g for g in plan if not bn_folds(model, [g])]
        if plan:
            model = tq.fuse_modules(model, plan)
            steps.append(f"fused {len(plan)} group(s)")
        wrapped = wrap and not has_quant_stub(model)
        if float_layers:
            keep_in_float(model, float_layers)
            steps.append(f"kept in float: {', '.join(float_layers)}")
        if wrapped:  # decided before keep_in_float added stubs of its own inside the model
            model = tq.QuantWrapper(model)
            steps.append("wrapped with QuantStub/DeQuantStub")
        model.qconfig = default_qconfig(qconfig_engine, weight_per_channel)
        prepared = tq.prepare(model)
        if calibrate_model:
            calibrate(prepared, batches)
        quantized = tq.convert(prepared) if convert else prepared
        quantized.train(train)
    steps.append(
        f"qconfig '{qconfig_engine}', engine '{engine}'"
        if qconfig_engine != engine
        else f"qconfig and engine '{engine}'"
    )
    steps.append(f"calibrated on {len(batches)} batch(es)" if calibrate_model else "not calibrated")
    steps.append("converted" if convert else "not converted")
    if train:
        steps.append("left in training mode")
    n = names or CodeNames()
    lines = [
        f'torch.backends.quantized.engine = "{engine}"',
        f"{n.model} = {n.float_model}.{'train' if train else 'eval'}()",
    ]
    if plan:
        lines.append(f"{n.model} = torch.ao.quantization.fuse_modules({n.model}, {plan!r})")
    if float_layers:
        lines.append(KEEP_IN_FLOAT_CODE.format(paths=list(float_layers), model=n.model))
    if wrapped:
        lines.append(f"{n.model} = torch.ao.quantization.QuantWrapper({n.model})")
    lines.append(f"{n.model}.qconfig = {qconfig_code(qconfig_engine, weight_per_channel)}")
    lines.append(f"{n.prepared} = torch.ao.quantization.prepare({n.model})")
    if calibrate_model:
        lines.append(n.calibration_loop())
    if convert:
        lines.append(f"{n.quantized_model} = torch.ao.quantization.convert({n.prepared})")
    else:
        lines.append(f"{n.quantized_model} = {n.prepared}")
    return Built(quantized, engine, steps, "\n".join(lines))


@register
class EagerFlow(Flow):
    kind = FlowKind(
        "eager",
        "eager mode (prepare / convert, QuantStub and fuse_modules by hand)",
        prepare_step="eager prepare",
        prepare_qat_step="eager QAT (prepare_qat)",
        convert_code="{model} = torch.ao.quantization.convert({model}.eval())  # after calibration",
        convert_qat_code=(
            "{model}.eval()  # after QAT training\n"
            "{model}.apply(torch.ao.quantization.disable_observer)  # freeze the learned scales\n"
            "{model} = torch.ao.quantization.convert({model})"
        ),
    )
    priority = 60
    places_stubs = False
    fuses_itself = False
    plan_fields = frozenset(
        {
            "engine",
            "qconfig_engine",
            "stubs",
            "fuse_activations",
            "fold_bn",
            "calibrate",
            "convert",
            "eval_mode",
            "threads",
            "float_layers",
            "weight_per_channel",
            "calibration_skip",
        }
    )
    recipe_rank = 2

    def matches(self, look: ModelFlow) -> bool:
        return look.graph is None and not look.script and bool(look.module_kinds & _EAGER_KINDS)

    def rebuild(self, plan: RebuildPlan, given: RebuildInputs) -> Built:
        groups = given.fusion_groups
        if plan.fuse_activations and plan.fold_bn:
            chosen = groups
        elif plan.fold_bn:
            chosen = bn_folds(given.float_model, groups)
        elif plan.fuse_activations:
            chosen = [g for g in groups if not bn_folds(given.float_model, [g])]
        else:
            chosen = []
        return static_eager(
            given.float_model,
            plan.engine,
            given.batches,
            groups=chosen,
            wrap=plan.stubs,
            qconfig_engine=plan.qconfig_engine,
            calibrate_model=plan.calibrate,
            convert=plan.convert,
            train=not plan.eval_mode,
            names=given.names,
            float_layers=plan.float_layers,
            weight_per_channel=plan.weight_per_channel,
        )

    def recipes(self, engines: Sequence[str]) -> list[Recipe]:
        return [Recipe(f"eager-{e}", self, e, f"static int8, eager mode, {e} engine") for e in engines]

    def default_recipes(self, native: str, engines: Sequence[str]) -> list[str]:
        return [f"eager-{native}"]

    def build_recipe(self, recipe: Recipe, given: BuildInputs) -> Built:
        """Eager static int8 where the model is eager-ready: it has its own QuantStub (e.g. torchvision's
        ``models.quantization.*``), or wrapping the whole model in QuantWrapper gives a model that runs.

        A quick probe (calibrated on one batch) finds out before paying for the full calibration: eager int8 cannot
        run tensor arithmetic (``out += identity``) on quantized tensors without FloatFunctional, which FX inserts by
        itself.
        """
        engine = recipe.engine or "x86"
        own_stubs = has_quant_stub(given.float_model)
        if not own_stubs and len(given.inputs) != 1:
            raise SkipRecipe(
                f"the model takes {len(given.inputs)} inputs and has no QuantStub of its own; QuantWrapper wraps a "
                "single input. Use the fx recipes (they place the stubs)"
            )
        groups = given.fusion_plan()
        probe = static_eager(given.float_model, engine, given.batches[:1], groups=groups)
        try:
            with quantized_engine(engine), torch.no_grad(), quiet():
                probe.model(*given.inputs)
        except Exception as exc:
            explanation = given.explain_failure(exc)
            if own_stubs:
                raise RuntimeError(
                    f"the model has its own QuantStub but its eager int8 version raised: {explanation}"
                ) from exc
            raise SkipRecipe(f"the model cannot simply be wrapped with QuantStub/DeQuantStub: {explanation}") from None
        del probe
        return static_eager(given.float_model, engine, given.batches, groups=groups)
