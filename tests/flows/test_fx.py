"""The FX graph mode flow: detection of prepare_fx / convert_fx / reference models, rebuild, its compare recipes."""

from __future__ import annotations

import copy

import torch.ao.quantization as tq
from flowtools import EXAMPLE, detected, float_net, rebuild
from torch.ao.quantization.quantize_fx import convert_fx, convert_to_reference_fx, prepare_fx

from qdoctor import flows

FX = flows.flow_named("fx")


def test_fx_stages_are_detected_from_the_graph():
    prepared = prepare_fx(float_net(), tq.get_default_qconfig_mapping("x86"), EXAMPLE)
    prepared(*EXAMPLE)
    assert (detected(prepared).flow, detected(prepared).stage) == (FX, flows.PREPARED)
    converted = convert_fx(copy.deepcopy(prepared))
    assert (detected(converted).flow, detected(converted).stage) == (FX, flows.CONVERTED)
    reference = convert_to_reference_fx(copy.deepcopy(prepared))
    assert detected(reference).stage == flows.REFERENCE


def test_rebuild_keeps_a_layer_float_with_set_module_name():
    built = rebuild(FX, float_net(), float_layers=("fc",), weight_per_channel=False)
    assert 'qconfig_mapping.set_module_name("fc", None)' in built.code and "prepare_fx(" in built.code
    assert "kept in float: fc" in built.steps


def test_fx_traits_and_default_recipes_compare_every_engine():
    assert FX.static and FX.places_stubs and FX.fuses_itself and "eval_mode" not in FX.plan_fields
    engines = ("x86", "fbgemm", "qnnpack", "onednn")
    assert FX.default_recipes("x86", engines) == [f"fx-{e}" for e in engines]
