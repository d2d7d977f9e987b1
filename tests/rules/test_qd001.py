"""QD001 uncalibrated-observers: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import math

import pytest
from conftest import codes, findings_of
from factsbuild import X86_QCONFIG, f32, healthy_facts, make_facts, mev, mod, q, qconv, run_rule

from qdoctor import facts as F

FIXTURES = [
    "fixtures/triage_uncalibrated.py",
    "fixtures/seed004_as_written.py",
    "fixtures/standin_pretrained_weights.py",
    "fixtures/keep_going.py",
]


def test_qd001_quiet_on_a_healthy_converted_model():
    assert run_rule("QD001", healthy_facts()) == []


def test_qd001_default_qparams_point_at_first_conv_with_sqnr():
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB, scale=1.0, zero_point=0),
        qconv("conv", scale=1.0, zp=0),
        qconv("fc", scale=1.0, zp=0, type_="Linear"),
    ]
    events = [
        mev("quant", "Quantize", [f32()], [q()]),
        mev("conv", "Conv2d", [q()], [q()]),
        mev("fc", "Linear", [q()], [q()]),
    ]
    found = run_rule("QD001", make_facts(modules, events, sqnr=-0.3))
    assert len(found) == 1
    finding = found[0]
    assert finding.severity.value == "error"
    assert finding.location.module == "conv"  # not the QuantStub
    assert finding.evidence["modules_with_default_qparams"] == ["quant", "conv", "fc"]
    assert finding.evidence["sqnr_db"] == -0.3
    assert "SQNR -0.3 dB" in finding.message and "all 3" in finding.message
    assert "convert(prepared)" in finding.fix and "prepared(*batch)" in finding.fix


def test_qd001_partial_calibration_names_only_the_idle_modules():
    modules = [qconv("a"), qconv("b", scale=1.0, zp=0), qconv("c")]
    found = run_rule("QD001", make_facts(modules))
    assert [f.location.module for f in found] == ["b"]
    assert "1 of 3" in found[0].message


def test_qd001_calibrated_scale_of_one_with_nonzero_zero_point_is_not_flagged():
    assert run_rule("QD001", make_facts([qconv("a", scale=1.0, zp=5)])) == []


def test_qd001_observers_never_run_in_a_prepared_model_warn_at_their_owner():
    modules = [
        mod("conv", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG, has_observer_attached=True),
        mod(
            "conv.activation_post_process",
            "HistogramObserver",
            F.OBSERVER,
            observed_min=math.inf,
            observed_max=-math.inf,
        ),
    ]
    found = run_rule("QD001", make_facts(modules))
    assert len(found) == 1
    assert found[0].severity.value == "warning"
    assert found[0].location.module == "conv"
    assert "quantized_model(*batch)" in found[0].fix  # calibrate the prepared subject itself


def test_qd001_counts_a_fake_quant_once_not_with_its_inner_observer():
    modules = [
        mod("conv", "Conv2d", F.QAT),
        mod(
            "conv.activation_post_process", "FakeQuantize", F.FAKE_QUANT, observed_min=math.inf, observed_max=-math.inf
        ),
        mod(
            "conv.activation_post_process.activation_post_process",
            "MovingAverageMinMaxObserver",
            F.OBSERVER,
            observed_min=math.inf,
            observed_max=-math.inf,
        ),
    ]
    found = run_rule("QD001", make_facts(modules))
    assert found[0].evidence["observers_never_run"] == ["conv.activation_post_process"]


def test_qd001_torch_warning_counts_only_when_no_int8_module_can_be_checked():
    warning = "UserWarning: must run observer before calling calculate_qparams. Returning default scale and zero point"
    dynamic = [mod("fc", "Linear", F.DYNAMIC_QUANTIZED, weight_dtype="torch.qint8")]
    found = run_rule("QD001", make_facts(dynamic, warnings=[warning]))
    assert len(found) == 1 and found[0].location.module is None
    assert run_rule("QD001", make_facts(dynamic, warnings=["UserWarning: something else"])) == []
    # Calibrated int8 modules: the warning came from an observer that never runs (MobileNetV2's unused skip_add).
    assert run_rule("QD001", make_facts([qconv("a")], warnings=[warning])) == []


def test_qd001_ignores_modules_that_never_run_and_float_functionals():
    modules = [
        qconv("backbone"),
        qconv("aux_head", scale=1.0, zp=0),
        mod("skip_add", "QFunctional", F.FLOAT_FUNCTIONAL, scale=1.0, zero_point=0),
    ]
    events = [mev("backbone", "Conv2d", [q()], [q()])]
    assert run_rule("QD001", make_facts(modules, events)) == []
    unused_observer = [
        mod("aux", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG, has_observer_attached=True),
        mod(
            "aux.activation_post_process",
            "HistogramObserver",
            F.OBSERVER,
            observed_min=math.inf,
            observed_max=-math.inf,
        ),
    ]
    assert run_rule("QD001", make_facts(unused_observer, [mev("stem", "Conv2d", [f32()], [f32()])])) == []


def test_qd001_fix_for_an_fx_graph_module_uses_convert_fx():
    modules = [mod("", "GraphModule", F.CONTAINER), qconv("conv", scale=1.0, zp=0)]
    (finding,) = run_rule("QD001", make_facts(modules))
    assert "prepare_fx" in finding.fix and "convert_fx(prepared)" in finding.fix


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd001(check_fixture, fixture):
    assert "QD001" in codes(check_fixture(fixture))


def test_plain_triage_script_uncalibrated_shows_sqnr(check_fixture):
    report = check_fixture("fixtures/triage_uncalibrated.py")
    assert codes(report) == ["QD001"]
    (qd001,) = report.findings
    assert qd001.location.module == "c1"
    assert qd001.location.line == 12
    assert qd001.evidence["sqnr_db"] is not None and qd001.evidence["sqnr_db"] < 10
    assert "int8_net = torch.ao.quantization.convert(prepared)" in qd001.fix


def test_seed004_as_written_names_every_uncalibrated_module(check_fixture):
    report = check_fixture("fixtures/seed004_as_written.py")
    (qd001,) = findings_of(report, "QD001")
    assert qd001.location.module == "0" and qd001.location.line == 10
    assert qd001.evidence["modules_with_default_qparams"] == ["0", "3", "7"]
    assert qd001.evidence["torch_warning"]


def test_healthy_control_has_no_qd001(check_fixture):
    assert "QD001" not in codes(check_fixture("fixtures/healthy_static.py"))
