"""The torchao quantize_ flow: detection from torchao weights (always converted); rebuilt the eager way."""

from __future__ import annotations

import pytest
import torch
from flowtools import detected

from qdoctor import flows
from qdoctor.introspect.flow import model_flow

TORCHAO = flows.flow_named("torchao")


def test_quantize_is_detected_and_rebuilt_the_eager_way():
    torchao = pytest.importorskip("torchao")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    model = torch.nn.Sequential(torch.nn.Linear(16, 16)).eval()
    quantize_(model, Int8WeightOnlyConfig())
    found = detected(model)
    assert found.flow is TORCHAO and found.stage == flows.CONVERTED, torchao.__version__
    assert flows.rebuild_flow(model_flow(model)) is flows.flow_named("eager")


def test_torchao_has_no_recipe_and_no_rebuild_of_its_own():
    assert TORCHAO.recipes(("x86",)) == [] and not TORCHAO.plan_fields
