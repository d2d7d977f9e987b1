"""QD005 fp32-fallback: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import pytest
from conftest import codes
from factsbuild import f32, fev, healthy_chain, healthy_facts, make_facts, mev, mod, profile, q, qconv, run_rule

from qdoctor import facts as F
from qdoctor.diagnose.rules.qd005_fp32_fallback import MATERIAL_SHARE
from qdoctor.facts import TensorInfo

FIXTURES = ["fixtures/fp32_fallback.py", "fixtures/fx_gelu_fallback.py"]


def _fallback_trace():
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3),
        qconv("stem"),
        mod("to_float", "DeQuantize", F.DEQUANT_STUB),
        mod("mid", "Conv2d", F.FLOAT),
        mod("act", "SiLU", F.FLOAT),
        mod("to_int8", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3),
        qconv("block"),
        mod("dequant", "DeQuantize", F.DEQUANT_STUB),
        mod("head", "Softmax", F.FLOAT),
    ]
    events = [
        mev("quant", "Quantize", [f32()], [q()]),
        mev("stem", "Conv2d", [q()], [q()]),
        mev("to_float", "DeQuantize", [q()], [f32()]),
        mev("mid", "Conv2d", [f32()], [f32()]),
        fev("view", "", [f32()], [f32()]),
        mev("act", "SiLU", [f32()], [f32()]),
        mev("to_int8", "Quantize", [f32()], [q()]),
        mev("block", "Conv2d", [q()], [q()]),
        mev("dequant", "DeQuantize", [q()], [f32()]),
        mev("head", "Softmax", [f32()], [f32()]),  # the float tail: a boundary, not a fallback
    ]
    return modules, events


def test_qd005_quiet_on_a_healthy_converted_model():
    assert run_rule("QD005", healthy_facts()) == []


def test_qd005_names_the_float_modules_between_int8_regions_and_their_share():
    modules, events = _fallback_trace()
    prof = profile(
        10.0,
        {"to_float": 0.2, "mid": 2.0, "act": 0.5, "to_int8": 0.3, "head": 1.0},
        shares={F.CAT_FLOAT: 0.35, F.CAT_QDQ: 0.08},
    )
    (finding,) = run_rule("QD005", make_facts(modules, events, profile=prof))
    assert finding.severity.value == "warning"
    assert finding.location.module == "mid"
    assert finding.evidence["round_trips"] == 1
    assert finding.evidence["float_modules"] == ["mid", "act"]  # not the view, not the float tail
    assert finding.evidence["fallback_share"] == pytest.approx(0.3)
    assert 'float_model.mid.qconfig = torch.ao.quantization.get_default_qconfig("x86")' in finding.fix
    assert "act" in finding.fix and "no eager-mode int8 kernel" in finding.fix


def test_qd005_a_small_share_is_info_and_no_profile_is_info():
    modules, events = _fallback_trace()
    small = profile(
        100.0,
        {"to_float": 0.2, "mid": 2.0, "act": 0.5, "to_int8": 0.3},
        shares={F.CAT_FLOAT: 0.025, F.CAT_QDQ: 0.005},
    )
    assert (2.0 + 0.5 + 0.2 + 0.3) / 100.0 < MATERIAL_SHARE
    assert run_rule("QD005", make_facts(modules, events, profile=small))[0].severity.value == "info"
    assert run_rule("QD005", make_facts(modules, events))[0].severity.value == "info"


def test_qd005_model_boundaries_are_not_round_trips():
    modules, events = healthy_chain()
    head = [fev("normalize", "", [f32()], [f32()])]
    tail = [fev("softmax", "", [f32()], [f32()])]
    assert run_rule("QD005", make_facts(modules, head + events + tail)) == []


def test_qd005_leaves_hand_made_float_adds_to_qd011():
    modules, events = healthy_chain()
    trip = [
        fev("dequantize", "", [q()], [f32()]),
        fev("Tensor.__add__", "", [f32(), f32()], [f32()]),
        fev("quantize_per_tensor", "", [f32()], [q()]),
    ]
    assert run_rule("QD005", make_facts(modules, events[:2] + trip + events[2:])) == []


def test_qd005_counts_function_fallbacks_through_the_profile_categories():
    modules, events = healthy_chain()
    trip = [
        fev("Tensor.dequantize", "", [q()], [f32()]),
        fev("sigmoid", "", [f32()], [f32()]),
        fev("quantize_per_tensor", "", [f32()], [q()]),
    ]
    prof = profile(10.0, {"quant": 0.3, "dequant": 0.2, "conv": 5.0}, shares={F.CAT_FLOAT: 0.2, F.CAT_QDQ: 0.15})
    (finding,) = run_rule("QD005", make_facts(modules, events[:2] + trip + events[2:], profile=prof))
    assert finding.evidence["float_functions"] == ["sigmoid()"]
    # all float time is the sigmoid's; the quantize/dequantize time left after the stub modules is the trip's
    assert finding.evidence["fallback_share"] == pytest.approx((2.0 + 1.5 - 0.5) / 10.0)


def test_qd005_reshape_only_round_trip_in_fx_is_weighed_by_tensor_size():
    image, vector = TensorInfo("torch.float32", [1, 3, 32, 32], False), TensorInfo("torch.float32", [1, 16], False)
    q_image, q_vector = TensorInfo("torch.quint8", [1, 3, 32, 32], True), TensorInfo("torch.quint8", [1, 16], True)
    modules = [mod("", "GraphModule", F.CONTAINER), qconv("conv"), qconv("fc", type_="Linear")]
    events = [
        fev("quantize_per_tensor", "", [image], [q_image]),
        mev("conv", "Conv2d", [q_image], [q_vector]),
        fev("Tensor.dequantize", "", [q_vector], [vector]),
        fev("Tensor.flatten", "", [vector], [vector]),
        fev("quantize_per_tensor", "", [vector], [q_vector]),
        mev("fc", "Linear", [q_vector], [q_vector]),
        fev("Tensor.dequantize", "", [q_vector], [vector]),
    ]
    prof = profile(10.0, {"conv": 6.0, "fc": 1.0}, shares={F.CAT_QDQ: 0.3})
    (finding,) = run_rule("QD005", make_facts(modules, events, profile=prof))
    assert finding.evidence["reshapes_only"] is True
    assert "`Tensor.flatten()`" in finding.message
    assert finding.severity.value == "info"  # 32 of 3136 quantized/dequantized elements are the round trip's
    assert finding.evidence["fallback_share"] == pytest.approx(3.0 * 32 / (3072 + 16 + 16 + 16) / 10.0, abs=1e-3)
    assert "torch.flatten(x, 1)" in finding.fix


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd005(check_fixture, fixture):
    assert "QD005" in codes(check_fixture(fixture))


def test_fp32_fallback_counts_round_trips_and_names_float_modules(check_fixture):
    report = check_fixture("fixtures/fp32_fallback.py")
    assert codes(report) == ["QD005"]
    (qd005,) = report.findings
    assert qd005.location.module == "mid"
    assert qd005.evidence["round_trips"] == 2
    assert qd005.evidence["float_modules"] == ["mid", "mid_act", "gate"]
    assert qd005.evidence["transitions"] == ["to_float -> to_int8", "to_float2 -> to_int8_2"]
    assert "fallback_share" in qd005.evidence
