"""QD007 dynamic-quant-low-coverage: unit tests on hand-built Facts, then end to end over its fixture."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import make_facts, mod, profile, run_rule

from qdoctor import facts as F

FIXTURES = ["fixtures/dynamic_linear_only_resnet.py", "fixtures/standin_hub_resnet.py"]


def resnet_like(fc_ms: float, conv_ms: float, bn_ms: float = 0.0, lstm_ms: float = 0.0) -> list:
    mods = [
        ("conv1", "Conv2d", F.FLOAT, conv_ms),
        ("bn1", "BatchNorm2d", F.FLOAT, bn_ms),
        ("fc", "Linear", F.FLOAT, fc_ms),
    ]
    if lstm_ms:
        mods.append(("rnn", "LSTM", F.FLOAT, lstm_ms))
    return mods


def dynamic_facts(fc_ms: float, conv_ms: float, bn_ms: float = 0.0, lstm_ms: float = 0.0, float_profile=True):
    mods = resnet_like(fc_ms, conv_ms, bn_ms, lstm_ms)
    total = sum(m[3] for m in mods)
    subject_mods = [(p, t, F.DYNAMIC_QUANTIZED if p == "fc" else k, ms) for p, t, k, ms in mods]
    return make_facts(
        [
            mod("conv1", "Conv2d", F.FLOAT),
            mod("bn1", "BatchNorm2d", F.FLOAT),
            mod("fc", "Linear", F.DYNAMIC_QUANTIZED),
            mod("fc._packed_params", "LinearPackedParams", F.QUANTIZED),
        ]
        + ([mod("rnn", "LSTM", F.FLOAT)] if lstm_ms else []),
        [],
        script="import torch\nmodel_dynamic = torch.ao.quantization.quantize_dynamic(model, {nn.Linear})\n",
        profile=profile(total, subject_mods, shares={F.CAT_FLOAT: 0.99, F.CAT_INT8: 0.01}, runs=5),
        float_profile=profile(total, mods, shares={F.CAT_FLOAT: 1.0}, runs=5) if float_profile else None,
    )


def test_qd007_linear_only_dynamic_on_a_cnn():
    facts = dynamic_facts(fc_ms=0.3, conv_ms=70.0, bn_ms=16.0)
    [finding] = run_rule("QD007", facts)
    assert finding.location.module == "fc"
    assert finding.location.line == 2  # the quantize_dynamic call in the user's script
    assert finding.evidence["covered_share"] < 0.01
    assert finding.evidence["profile_of"] == "float baseline"
    assert list(finding.evidence["uncovered_time_by_type"])[:2] == ["Conv2d", "BatchNorm2d"]
    assert "prepare_fx" in finding.fix and "qdoctor compare" in finding.fix


def test_qd007_quiet_when_the_covered_layers_dominate():
    assert run_rule("QD007", dynamic_facts(fc_ms=60.0, conv_ms=40.0)) == []


def test_qd007_suggests_adding_lstm_when_it_dominates():
    [finding] = run_rule("QD007", dynamic_facts(fc_ms=0.5, conv_ms=2.0, lstm_ms=50.0))
    assert "nn.LSTM" in finding.fix and "quantize_dynamic" in finding.fix


def test_qd007_uses_the_subject_profile_without_a_float_baseline():
    [finding] = run_rule("QD007", dynamic_facts(fc_ms=0.3, conv_ms=70.0, float_profile=False))
    assert finding.evidence["profile_of"] == "quantized model"


def test_qd007_fix_for_a_build_model_target_never_assigns_to_the_function():
    """The subject comes from build_model(): a fix that rebinds the model names it quantized_model (as QD001-QD006
    do), never `build_model = ...`, which would replace the user's function."""
    facts = dynamic_facts(fc_ms=0.5, conv_ms=2.0, lstm_ms=50.0)
    facts.target.subject_name = "build_model()"
    [finding] = run_rule("QD007", facts)
    assert "build_model =" not in finding.fix and "quantized_model = " in finding.fix, finding.fix


def test_qd007_quantize_dynamic_that_converted_nothing():
    """quantize_dynamic({nn.Conv2d, nn.Linear}) on a CNN without Linear converts nothing (no dynamic conv kernel):
    coverage zero, the model the script runs is fp32 throughout (matrix cell upsampler-dynamic_convs)."""
    mods = [("enc", "Conv2d", F.FLOAT, 6.0), ("up", "ConvTranspose2d", F.FLOAT, 3.0)]
    script = "import torch\nq = torch.ao.quantization.quantize_dynamic(net, {nn.Conv2d, nn.Linear})\n"
    modules = [mod("enc", "Conv2d", F.FLOAT), mod("up", "ConvTranspose2d", F.FLOAT)]
    facts = make_facts(modules, [], script=script, profile=profile(9.0, mods, shares={F.CAT_FLOAT: 1.0}, runs=5))
    [finding] = run_rule("QD007", facts)
    assert finding.location.line == 2 and finding.evidence["covered_share"] == 0.0
    assert "no int8 layer" in finding.message and "Conv2d" in finding.message
    assert "prepare_fx" in finding.fix
    # a float model with a Linear is not what quantize_dynamic returned (it would have converted the Linear)
    with_linear = make_facts([*modules, mod("fc", "Linear", F.FLOAT)], [], script=script, profile=facts.profile)
    assert run_rule("QD007", with_linear) == []
    # no quantize_dynamic call in the script: a float model, nothing to say
    assert run_rule("QD007", make_facts(modules, [], script="import torch\n", profile=facts.profile)) == []


def test_qd007_ignores_static_models():
    facts = dynamic_facts(fc_ms=0.3, conv_ms=70.0)
    facts.modules.append(mod("conv2", "Conv2d", F.QUANTIZED))
    assert run_rule("QD007", facts) == []


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd007(check_fixture, fixture):
    assert "QD007" in codes(check_fixture(fixture))


def test_dynamic_linear_only_resnet(check_fixture):
    report = check_fixture("fixtures/dynamic_linear_only_resnet.py")
    [finding] = findings_of(report, "QD007")
    assert finding.location.module == "fc" and finding.location.line == 13
    assert finding.evidence["covered_share"] < 0.25
