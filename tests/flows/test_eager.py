"""The eager static flow: detection, stages, rebuild with the fusion plan and float layers, its compare recipe."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.ao.quantization as tq
from flowtools import EXAMPLE, detected, float_net, rebuild

from qdoctor import flows
from qdoctor.flows import BuildInputs, SkipRecipe

EAGER = flows.flow_named("eager")


def test_a_prepared_then_converted_eager_model_is_detected_with_its_stage():
    model = tq.QuantWrapper(float_net())
    model.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(model)
    assert (detected(prepared).flow, detected(prepared).stage) == (EAGER, flows.PREPARED)
    prepared(*EXAMPLE)
    converted = tq.convert(copy.deepcopy(prepared))
    assert (detected(converted).flow, detected(converted).stage) == (EAGER, flows.CONVERTED)


def test_rebuild_fuses_the_plan_keeps_layers_float_and_writes_the_code():
    built = rebuild(EAGER, float_net(), groups=[["conv", "bn", "relu"]], float_layers=("fc",))
    assert "fused 1 group(s)" in built.steps and "kept in float: fc" in built.steps
    assert "fuse_modules(model, [['conv', 'bn', 'relu']])" in built.code and "QuantWrapper" in built.code
    assert isinstance(built.model.module.fc[1], torch.nn.Linear)  # between DeQuantStub and QuantStub, float


def test_rebuild_as_written_without_fusion_or_stubs():
    built = rebuild(EAGER, float_net(), fuse_activations=False, fold_bn=False, calibrate=False, convert=False)
    assert "not calibrated" in built.steps and "not converted" in built.steps
    assert "fuse_modules" not in built.code


def test_eager_traits_and_recipes():
    assert EAGER.static and not EAGER.places_stubs and not EAGER.fuses_itself
    assert [r.name for r in EAGER.recipes(("x86", "qnnpack"))] == ["eager-x86", "eager-qnnpack"]
    two_inputs = BuildInputs(float_net(), (torch.randn(1, 3, 8, 8), torch.randn(1)), [])
    with pytest.raises(SkipRecipe, match="QuantWrapper wraps a single input"):
        EAGER.build_recipe(EAGER.recipes(("x86",))[0], two_inputs)
