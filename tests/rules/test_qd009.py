"""QD009 training-mode: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import f32, fev, healthy_facts, make_facts, mev, mod, q, run_rule

from qdoctor import facts as F

FIXTURES = ["fixtures/qat_converted_in_train_mode.py", "fixtures/bn_kept_float.py"]


def test_qd009_quiet_on_a_healthy_converted_model():
    assert run_rule("QD009", healthy_facts()) == []


def test_qd009_dropout_active_in_a_converted_model():
    facts = make_facts(
        [
            mod("conv", "ConvReLU2d", F.QUANTIZED, training=True),
            mod("drop", "Dropout", F.FLOAT, training=True, line=9),
            mod("qdrop", "Dropout", F.QUANTIZED, training=True),
        ],
        [],
    )
    facts.modules[0].training = True
    [finding] = run_rule("QD009", facts)
    assert finding.location.module == "drop" and finding.location.line == 9
    assert finding.evidence["train_mode_layers"] == ["drop"]  # the int8 Dropout is a no-op in any mode
    assert finding.evidence["calibrated_in_train_mode"] == ["qdrop"]  # but it was active during calibration
    assert ".eval()" in finding.fix


def test_qd009_int8_batchnorm_calibrated_in_train_mode():
    """convert() creates every int8 module in train mode, so only the root tells that the model was prepared and
    calibrated without .eval(): its int8 BatchNorm then holds the calibration batches' statistics (matrix cell
    residual_cnn-train_mode: a BatchNorm left unfused and quantized, no Dropout, no finding before)."""
    modules = [
        mod("conv", "ConvReLU2d", F.QUANTIZED, training=True),
        mod("bn", "BatchNorm2d", F.QUANTIZED, training=True, line=7),
    ]
    facts = make_facts(modules, [])
    facts.modules[0].training = True
    [finding] = run_rule("QD009", facts)
    assert finding.evidence["calibrated_in_train_mode"] == ["bn"] and finding.location.line == 7
    assert "calibrated in train mode" in finding.message and "running statistics" in finding.message
    assert "before prepare()" in finding.fix
    modules.append(mod("drop", "Dropout", F.QUANTIZED, training=True))  # int8 Dropout: a no-op now, not in calibration
    facts = make_facts(modules, [])
    facts.modules[0].training = True
    [finding] = run_rule("QD009", facts)
    assert finding.evidence["calibrated_in_train_mode"] == ["bn", "drop"] and "1/(1-p)" in finding.message
    facts.modules[0].training = False  # the root in eval mode: its int8 modules' own flags say nothing
    assert run_rule("QD009", facts) == []


def test_qd009_quiet_in_eval_mode():
    facts = make_facts([mod("drop", "Dropout", F.FLOAT), mod("bn", "BatchNorm2d", F.FLOAT)], [])
    assert run_rule("QD009", facts) == []


def test_qd009_functional_dropout_in_forward():
    facts = make_facts(
        [mod("fc", "Linear", F.DYNAMIC_QUANTIZED, training=True)],
        events=[fev("dropout", "", [f32()], [f32()], line=31, code="x = F.dropout(x, 0.5, self.training)")],
    )
    facts.modules[0].training = True
    [finding] = run_rule("QD009", facts)
    assert finding.evidence["functional_dropout_lines"] == [31]


def test_qd009_float_batchnorm_between_int8_convs():
    facts = make_facts(
        [
            mod("quant", "Quantize", F.QUANT_STUB),
            mod("conv1", "Conv2d", F.QUANTIZED),
            mod("dq", "DeQuantize", F.DEQUANT_STUB),
            mod("bn1", "BatchNorm2d", F.FLOAT, line=7),
            mod("rq", "Quantize", F.QUANT_STUB),
            mod("relu1", "ReLU", F.FLOAT),
            mod("conv2", "Conv2d", F.QUANTIZED),
        ],
        events=[
            mev("quant", "Quantize", [f32()], [q()]),
            mev("conv1", "Conv2d", [q()], [q()]),
            mev("dq", "DeQuantize", [q()], [f32()]),
            mev("bn1", "BatchNorm2d", [f32()], [f32()]),
            mev("rq", "Quantize", [f32()], [q()]),
            mev("relu1", "ReLU", [q()], [q()]),
            mev("conv2", "Conv2d", [q()], [q()]),
        ],
    )
    [finding] = run_rule("QD009", facts)
    assert finding.location.module == "bn1" and finding.location.line == 7
    assert '["conv1", "bn1", "relu1"]' in finding.fix
    assert finding.evidence["stubs_around_it"] == ["dq", "rq"]


def test_qd009_fix_for_a_build_model_target_never_assigns_to_the_function():
    """The subject comes from build_model(): a fix that rebinds the model names it quantized_model (as QD001-QD006
    do), never `build_model = ...`, which would replace the user's function."""
    facts = make_facts([mod("conv", "ConvBnReLU2d", F.QAT, training=True, line=5)], [])
    facts.target.subject_name = "build_model()"
    [finding] = run_rule("QD009", facts)
    assert "build_model =" not in finding.fix and "quantized_model = " in finding.fix, finding.fix


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd009(check_fixture, fixture):
    assert "QD009" in codes(check_fixture(fixture))


def test_qat_converted_in_train_mode(check_fixture):
    report = check_fixture("fixtures/qat_converted_in_train_mode.py")
    [finding] = findings_of(report, "QD009")
    assert finding.location.module == "classifier.1"
    assert finding.location.line == 42  # the convert() call that needed model.eval() first


def test_bn_kept_float(check_fixture):
    report = check_fixture("fixtures/bn_kept_float.py")
    assert [f.location.module for f in findings_of(report, "QD009")] == ["block1.bn", "block2.bn"]
    assert all(f.location.line == 14 for f in findings_of(report, "QD009"))
