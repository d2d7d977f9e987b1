"""QD016 quantized-dtype-mismatch: unit tests on hand-built Facts, then end to end over its fixtures.

Which crash message belongs to QD016 (and which to another rule) is tested with the other causes in
tests/test_crash_causes.py.
"""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import crash, f32, healthy_facts, make_facts, mev, mod, q, qconv, run_rule

from qdoctor import facts as F
from qdoctor.facts import TensorInfo

FIXTURES = ["fixtures/float_conv_gets_int8.py", "fixtures/qint8_activation_qconfig.py"]
QINT8 = TensorInfo("torch.qint8", [1, 8], True)


def test_qd016_quiet_without_a_crash():
    assert run_rule("QD016", healthy_facts()) == []


def test_qd016_int8_tensor_into_a_float_conv_points_at_the_module():
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3),
        qconv("body"),
        mod("head", "Conv2d", F.FLOAT, line=20),
    ]
    events = [
        mev("quant", "Quantize", [f32()], [q()]),
        mev("body", "Conv2d", [q()], [q()]),
        mev("head", "Conv2d", [q()], []),
    ]
    raised = crash("Input type (c10::quint8) and bias type (float) should be the same", module="head", line=31)
    (finding,) = run_rule("QD016", make_facts(modules, events, crash=raised, output=[]))
    assert finding.severity.value == "error"
    assert finding.location.module == "head" and finding.location.line == 31
    assert finding.evidence["module_kind"] == F.FLOAT and finding.evidence["input_dtypes"] == ["torch.quint8"]
    assert "is a float module" in finding.message
    assert "self.dequant_head = torch.ao.quantization.DeQuantStub()" in finding.fix
    assert run_rule("QD014", make_facts(modules, events, crash=raised, output=[])) == []


def test_qd016_signed_activations_name_the_stub_that_made_them():
    modules = [mod("0", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=0), qconv("1")]
    events = [mev("0", "Quantize", [f32()], [QINT8]), mev("1", "Conv2d", [QINT8], [])]
    raised = crash("Expected input data type QUInt8 but got QInt8", module="1", line=None)
    (finding,) = run_rule("QD016", make_facts(modules, events, crash=raised, output=[]))
    assert finding.location.module == "1"
    assert finding.evidence["qint8_made_by"] == "0"
    assert "made by `0`" in finding.message
    assert "dtype=torch.quint8" in finding.fix and 'get_default_qconfig("x86")' in finding.fix


def test_qd016_weight_observer_with_quint8_at_load_time():
    raised = crash("Weight observer must have a dtype of qint8, got torch.quint8", module=None, line=12, phase="load")
    (finding,) = run_rule("QD016", make_facts([mod("conv", "Conv2d", F.FLOAT)], load_crash=raised))
    assert finding.location.line == 12
    assert "weight observer" in finding.message
    assert 'get_default_qconfig("x86")' in finding.fix


def test_qd016_leaves_other_crashes_alone():
    raised = crash("shape '[1, 8192]' is invalid for input of size 2048", module="", line=21)
    assert run_rule("QD016", make_facts([qconv("conv")], [], crash=raised)) == []


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd016(check_fixture, fixture):
    assert "QD016" in codes(check_fixture(fixture))


def test_float_conv_gets_int8(check_fixture):
    report = check_fixture("fixtures/float_conv_gets_int8.py")
    [finding] = findings_of(report, "QD016")
    assert finding.location.module == "head" and finding.location.line == 20
    assert "QD014" not in codes(report)


def test_qint8_activations(check_fixture):
    report = check_fixture("fixtures/qint8_activation_qconfig.py")
    [finding] = findings_of(report, "QD016")
    assert finding.location.module == "1" and finding.evidence["qint8_made_by"] == "0"
    assert "QD014" not in codes(report)
