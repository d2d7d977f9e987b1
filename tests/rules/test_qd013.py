"""QD013 torchao-fallback: unit tests on hand-built Facts, then end to end over its fixtures (need torchao)."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import flow_kind, make_facts, profile, run_rule

from qdoctor import facts as F
from qdoctor.facts import CompileInfo, FlowInfo, ModuleInfo, ModuleTime, OpTime

FIXTURES = ["fixtures/torchao_weight_only.py"]


def torchao_layer(path: str, activation_quantized: bool) -> ModuleInfo:
    return ModuleInfo(
        path=path,
        type="Linear",
        type_module="torch.nn.modules.linear",
        kind=F.TORCHAO_QUANTIZED,
        is_leaf=True,
        training=False,
        weight_tensor_type="torchao.quantization.Int8Tensor",
        weight_storage_dtype="torch.int8",
        activation_quantized=activation_quantized,
    )


def test_qd013_finds_the_float_matmul_fallback_per_layer():
    ops_fallback = [OpTime("aten::mm", F.CAT_FLOAT, 1.0, 1), OpTime("aten::copy_", F.CAT_FLOAT, 0.5, 1)]
    ops_int8 = [OpTime("aten::_int_mm", F.CAT_INT8, 0.3, 1), OpTime("aten::copy_", F.CAT_FLOAT, 0.1, 1)]
    facts = make_facts(
        [torchao_layer("fc1", False), torchao_layer("fc2", True)],
        profile=profile(
            1.0,
            [
                ModuleTime("fc1", "Linear", F.TORCHAO_QUANTIZED, 1.6, ops=ops_fallback),
                ModuleTime("fc2", "Linear", F.TORCHAO_QUANTIZED, 0.5, ops=ops_int8),
            ],
        ),
    )
    findings = run_rule("QD013", facts)
    assert [f.location.module for f in findings] == ["fc1"]  # fc2 runs torch._int_mm: healthy
    assert findings[0].evidence["cause"] == "float-matmul" and findings[0].evidence["activation_quantized"] is False
    assert "Int8DynamicActivationInt8WeightConfig" in findings[0].fix and "torch.bfloat16" in findings[0].fix


@pytest.mark.parametrize(
    "int8_ms, quantize_ms, cause, fix",
    [
        (0.3, 0.9, "eager-activation-quantization", "torch.compile"),  # the eager quantization around it dominates
        (0.8, 0.1, "slow-int8-kernel", "filter_fn"),  # the int8 kernel alone costs the whole fp32 layer
    ],
)
def test_qd013_int8_layer_slower_than_its_fp32_twin(int8_ms, quantize_ms, cause, fix):
    ops = [OpTime("aten::_int_mm", F.CAT_INT8, int8_ms, 1), OpTime("aten::round", F.CAT_QDQ, quantize_ms, 1)]
    facts = make_facts(
        [torchao_layer("fc", True)],
        profile=profile(1.0, [ModuleTime("fc", "Linear", F.TORCHAO_QUANTIZED, 1.2, ops=ops)]),
    )
    facts.float_profile = profile(1.0, [ModuleTime("fc", "Linear", F.FLOAT, 0.6)])
    (finding,) = run_rule("QD013", facts)
    assert finding.location.module == "fc"
    assert finding.evidence["cause"] == cause and fix in finding.fix
    facts.flow = FlowInfo(flow_kind("torchao"), compiled=CompileInfo(backend="inductor"))
    assert run_rule("QD013", facts) == []  # compiled: not judged from eager per-layer times


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd013(check_fixture, fixture):
    pytest.importorskip("torchao")
    assert "QD013" in codes(check_fixture(fixture))


def test_torchao_weight_only_falls_back_to_float_matmul(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("fixtures/torchao_weight_only.py")
    layers = {m.path: m for m in report.facts.modules if m.kind == F.TORCHAO_QUANTIZED}
    assert set(layers) == {"fc1", "fc2", "out"}
    assert layers["fc1"].weight_storage_dtype == "torch.int8" and layers["fc1"].activation_quantized is False
    qd013 = {f.location.module: f.location.line for f in findings_of(report, "QD013")}
    assert qd013 == {"fc1": 13, "fc2": 15, "out": 16}


def test_torchao_dynamic_int8_has_an_int8_kernel(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("fixtures/torchao_dynamic_int8.py")
    assert report.facts.flow.flow == "torchao"
    # torch._int_mm runs: never the float-matmul fallback (whether eager quantization overhead shows depends on timing)
    assert not [f for f in findings_of(report, "QD013") if f.evidence["cause"] == "float-matmul"]
    assert {m.path for m in report.facts.modules if m.activation_quantized} == {"0", "2"}
