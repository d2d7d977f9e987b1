"""QD002 missing-quant-stub: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import env, f32, fev, healthy_facts, make_facts, mev, mod, q, qconv, run_rule

from qdoctor import facts as F
from qdoctor.facts import CrashInfo

FIXTURES = ["fixtures/seed004_as_written.py"]


def test_qd002_quiet_on_a_healthy_converted_model():
    assert run_rule("QD002", healthy_facts()) == []


def test_qd002_float_into_int8_module_without_quant_stub():
    modules = [qconv("0"), mod("1", "ReLU", F.FLOAT)]
    crash = CrashInfo(
        "NotImplementedError",
        "Could not run 'quantized::conv2d.new' with arguments from the 'CPU' backend.",
        "run",
        module="0",
    )
    (finding,) = run_rule("QD002", make_facts(modules, [mev("0", "Conv2d", [f32()], [])], crash=crash, output=[]))
    assert finding.location.module == "0"
    assert "raises here" in finding.message
    assert "QuantWrapper(float_model)" in finding.fix


def test_qd002_names_a_quant_stub_that_convert_skipped():
    modules = [mod("quant", "QuantStub", F.QUANT_STUB), qconv("conv"), mod("dequant", "DeQuantize", F.DEQUANT_STUB)]
    events = [mev("quant", "QuantStub", [f32()], [f32()]), mev("conv", "Conv2d", [f32()], [])]
    (finding,) = run_rule("QD002", make_facts(modules, events, output=[]))
    assert finding.location.module == "conv"
    assert "`quant` is still a no-op" in finding.message
    assert "float_model.quant.qconfig" in finding.fix


def test_qd002_int8_into_float_module_crash_asks_for_a_dequant_stub():
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3),
        qconv("conv"),
        mod("norm", "LocalResponseNorm", F.FLOAT),
    ]
    events = [
        mev("quant", "Quantize", [f32()], [q()]),
        mev("conv", "Conv2d", [q()], [q()]),
        mev("norm", "LocalResponseNorm", [q()], []),
    ]
    crash = CrashInfo(
        "NotImplementedError",
        "Could not run 'aten::pow.Tensor_Scalar' with arguments from the 'QuantizedCPU' backend.",
        "run",
        module="norm",
    )
    (finding,) = run_rule("QD002", make_facts(modules, events, crash=crash, output=[]))
    assert finding.location.module == "norm"
    assert "DeQuantStub" in finding.message and "dequant_before" in finding.fix


def test_qd002_leaves_function_level_crashes_to_qd011():
    modules = [mod("quant", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3), qconv("conv")]
    events = [
        mev("quant", "Quantize", [f32()], [q()]),
        mev("conv", "Conv2d", [q()], [q()]),
        fev("add", "", [q(), q()], []),
    ]
    crash = CrashInfo(
        "NotImplementedError",
        "Could not run 'aten::add.Tensor' with arguments from the 'QuantizedCPU' backend.",
        "run",
        module="",
    )
    assert run_rule("QD002", make_facts(modules, events, crash=crash, output=[])) == []


def test_qd002_int8_output_without_dequant_stub():
    modules = [mod("quant", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3), qconv("conv")]
    events = [mev("quant", "Quantize", [f32()], [q()]), mev("conv", "Conv2d", [q()], [q()])]
    (finding,) = run_rule("QD002", make_facts(modules, events, output=[q()]))
    assert finding.location.module == "conv"
    assert "returns an int8" in finding.message


def test_qd002_fix_names_the_engine_for_this_cpu_not_the_one_in_use():
    modules = [qconv("0")]
    f = make_facts(modules, [mev("0", "Conv2d", [f32()], [])], environment=env(engine="qnnpack"), output=[])
    (finding,) = run_rule("QD002", f)
    assert 'get_default_qconfig("x86")' in finding.fix and "qnnpack" not in finding.fix
    arm = make_facts(
        modules, [mev("0", "Conv2d", [f32()], [])], environment=env("aarch64", engine="qnnpack"), output=[]
    )
    assert 'get_default_qconfig("qnnpack")' in run_rule("QD002", arm)[0].fix


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd002(check_fixture, fixture):
    assert "QD002" in codes(check_fixture(fixture))


def test_seed004_as_written_reports_missing_stub_at_first_conv(check_fixture):
    report = check_fixture("fixtures/seed004_as_written.py")
    qd002 = findings_of(report, "QD002")
    assert qd002 and qd002[0].location.module == "0"
    assert qd002[0].location.line == 10
    assert report.facts.crash is not None and report.facts.crash.module == "0"


def test_seed004_crash_is_explained_by_qd002_not_left_to_qd014(check_fixture):
    report = check_fixture("fixtures/seed004_as_written.py")
    assert "QD002" in codes(report) and "QD014" not in codes(report)
