"""The eager dynamic flow: detection of quantize_dynamic, rebuild with layers kept float, its compare recipe."""

from __future__ import annotations

import pytest
import torch
import torch.ao.quantization as tq
from flowtools import detected, float_net, rebuild

from qdoctor import flows
from qdoctor.flows import BuildInputs, SkipRecipe

DYNAMIC = flows.flow_named("dynamic")


def test_quantize_dynamic_is_its_own_flow_and_rebuilds_itself():
    model = tq.quantize_dynamic(float_net(), {torch.nn.Linear})
    found = detected(model)
    assert found.flow is DYNAMIC and found.stage == flows.CONVERTED
    from qdoctor.introspect.flow import model_flow

    assert flows.rebuild_flow(model_flow(model)) is DYNAMIC


def test_rebuild_keeps_the_named_layers_float():
    built = rebuild(DYNAMIC, float_net(), dynamic_types=("Linear",), float_layers=("fc",))
    assert isinstance(built.model.fc, torch.nn.Linear) and "kept in float: fc" in built.steps
    assert '"fc": None' in built.code and "quantize_dynamic(" in built.code


def test_dynamic_traits_and_recipe_skip_without_linear_layers():
    assert not DYNAMIC.static and "calibrate" not in DYNAMIC.plan_fields
    conv_only = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    with pytest.raises(SkipRecipe, match="no nn.Linear"):
        DYNAMIC.build_recipe(DYNAMIC.recipes(("x86",))[0], BuildInputs(conv_only, (torch.randn(1, 3, 8, 8),), []))
