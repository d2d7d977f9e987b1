"""QD011 missing-float-functional: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import ADD_CRASH, crash, f32, fev, healthy_facts, make_facts, mev, mod, q, run_rule

from qdoctor import facts as F
from qdoctor.diagnose.registry import owners

FIXTURES = ["fixtures/resnet_block_add_crash.py", "fixtures/skip_add_dequant_roundtrip.py"]


def block_modules():
    return [
        mod("quant", "Quantize", F.QUANT_STUB),
        mod("layer1", "BasicBlock", F.CONTAINER),
        mod("layer1.conv1", "Conv2d", F.QUANTIZED, line=13),
        mod("layer1.conv2", "Conv2d", F.QUANTIZED, line=15),
    ]


def add_crash_facts(message=ADD_CRASH, name="Tensor.add_", inputs=None, code="out += identity"):
    inputs = (q(), q()) if inputs is None else inputs
    events = [
        mev("quant", "Quantize", [f32()], [q()]),
        mev("layer1.conv1", "Conv2d", [q()], [q()]),
        mev("layer1.conv2", "Conv2d", [q()], [q()]),
        fev(name, "layer1", inputs, [], line=22, code=code),
    ]
    return make_facts(
        block_modules(), events, crash=crash(message, module="layer1", line=22, type_="NotImplementedError")
    )


def test_qd011_quiet_on_a_healthy_converted_model():
    assert run_rule("QD011", healthy_facts()) == []


def test_qd011_residual_add_crash_points_at_the_forward_line():
    facts = add_crash_facts()
    [finding] = run_rule("QD011", facts)
    assert finding.severity.value == "error"
    assert finding.location.module == "layer1" and finding.location.line == 22
    assert "self.skip_add = torch.ao.nn.quantized.FloatFunctional()" in finding.fix
    assert "out = self.skip_add.add(out, identity)" in finding.fix
    assert run_rule("QD002", facts) == [] and run_rule("QD014", facts) == []


def test_qd011_scalar_multiply_maps_to_mul_scalar():
    facts = add_crash_facts(
        "promoteTypes with quantized numbers is not handled yet; figure out what the correct rules "
        "should be, offending types: QUInt8 Float",
        name="Tensor.mul",
        inputs=(q(),),
        code="out = out * 0.5",
    )
    [finding] = run_rule("QD011", facts)
    assert "out = self.skip_mul.mul_scalar(out, 0.5)" in finding.fix


def test_qd011_float_tensor_into_a_converted_float_functional():
    facts = add_crash_facts(
        "Could not run 'quantized::add' with arguments from the 'CPU' backend. ...",
        name="quantized::add",
        inputs=(f32(), f32()),
    )
    [finding] = run_rule("QD011", facts)
    assert "received a float tensor" in finding.message


def test_qd011_function_without_int8_kernel_gets_dequantize_advice():
    facts = add_crash_facts(
        "Could not run 'aten::exp.out' with arguments from the 'QuantizedCPU' backend.",
        name="Tensor.exp",
        inputs=(q(),),
    )
    [finding] = run_rule("QD011", facts)
    assert "no int8 kernel" in finding.message and "DeQuantStub" in finding.fix


def test_qd011_leaves_module_level_crashes_to_qd002():
    events = [mev("quant", "Quantize", [f32()], [q()]), mev("bn", "BatchNorm1d", [q()], [])]
    facts = make_facts(
        [mod("quant", "Quantize", F.QUANT_STUB), mod("bn", "BatchNorm1d", F.FLOAT)],
        events,
        crash=crash(ADD_CRASH.replace("add.out", "native_batch_norm"), module="bn", line=None),
    )
    assert run_rule("QD011", facts) == []
    assert [r.code for r in owners(facts.trace.crash, facts)] == ["QD002"]
    assert run_rule("QD014", facts) == []


def test_qd011_hand_written_round_trip_and_int8_cat():
    mods = [
        mod("dq_a", "DeQuantize", F.DEQUANT_STUB),
        mod("dq_b", "DeQuantize", F.DEQUANT_STUB),
        mod("requant", "Quantize", F.QUANT_STUB),
        mod("head", "Conv2d", F.QUANTIZED),
        mod("ff", "QFunctional", F.FLOAT_FUNCTIONAL),
    ]
    events = [
        mev("dq_a", "DeQuantize", [q()], [f32()]),
        mev("dq_b", "DeQuantize", [q()], [f32()]),
        fev("Tensor.add", "", [f32(), f32()], [f32()], line=25),
        mev("requant", "Quantize", [f32()], [q()]),
        fev("cat", "", [q(), q()], [q()], line=26),
        fev("quantized::cat", "", [q(), q()], [q()], line=27),  # FloatFunctional.cat after convert: fine
        mev("head", "Conv2d", [q()], [q()]),
    ]
    findings = run_rule("QD011", make_facts(mods, events))
    assert sorted(f.location.line for f in findings) == [25, 26]  # the round trip's add, the int8 torch.cat
    assert all(f.severity.value == "warning" for f in findings)


@pytest.mark.parametrize(
    "line, stubs, expected",
    [
        ("out += identity", (), "out = self.skip_add.add(out, identity)"),
        ("return self.relu(out + x)", (), "return self.relu(self.skip_add.add(out, x))"),
        ("y = torch.cat([a, b], dim=1)", (), "y = self.skip_cat.cat([a, b], dim=1)"),
        ("y = x * 0.5", (), "y = self.skip_mul.mul_scalar(x, 0.5)"),
        ("s = self.requant(self.dq_a(a) + self.dq_b(b))", ("dq_a", "dq_b", "requant"), "s = self.skip_add.add(a, b)"),
        ("out = a - b", (), None),
        ("if x:", (), None),
    ],
)
def test_qd011_fix_rewrites_the_users_line(line, stubs, expected):
    from qdoctor.diagnose.rules.qd011_missing_float_functional import rewrite_line

    assert rewrite_line(line, set(stubs)) == expected


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd011(check_fixture, fixture):
    assert "QD011" in codes(check_fixture(fixture))


def test_resnet_block_add_crash(check_fixture):
    report = check_fixture("fixtures/resnet_block_add_crash.py")
    assert "QD014" not in codes(report)
    [finding] = findings_of(report, "QD011")
    assert finding.location.module == "layer1" and finding.location.line == 22
    assert finding.location.code == "out += identity"


def test_hand_written_round_trip(check_fixture):
    report = check_fixture("fixtures/skip_add_dequant_roundtrip.py")
    assert sorted(f.location.line for f in findings_of(report, "QD011")) == [25, 26]
