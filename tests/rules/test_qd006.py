"""QD006 not-converted: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import pytest
from conftest import codes
from factsbuild import (
    X86_QCONFIG,
    crash,
    f32,
    flow_kind,
    healthy_chain,
    healthy_facts,
    make_facts,
    mev,
    mod,
    run_rule,
)

from qdoctor import facts as F

FIXTURES = [
    "fixtures/prepared_not_converted.py",
    "fixtures/qat_not_converted.py",
    "fixtures/fx_prepared_not_converted.py",
]


def test_qd006_quiet_on_a_healthy_converted_model():
    assert run_rule("QD006", healthy_facts()) == []
    modules, events = healthy_chain()
    assert run_rule("QD006", make_facts(modules, events)) == []  # unprofiled too


def test_qd006_quiet_when_the_script_converted_and_convert_raised():
    """The model is left prepared because convert() raised (pytorch#76304, a Conv1d with padding="valid"): it was
    converted, so "never converted" is false and converting again raises the same; QD017 explains the failure."""
    modules = [
        mod("conv", "Conv1d", F.FLOAT, qconfig=X86_QCONFIG),
        mod("conv.activation_post_process", "HistogramObserver", F.OBSERVER, observed_min=-1.0, observed_max=1.0),
    ]
    events = [mev("conv", "Conv1d", [f32()], [f32()])]
    prepared = F.FlowInfo(flow_kind("eager"), stage="prepared")
    raised = crash(
        "quantized::conv1d_prepack() Expected a value of type 'List[int]' for argument 'padding' but instead found "
        "type 'str'.",
        module=None,
        line=45,
        phase="load",
        code="qmodel = torch.quantization.convert(myModel, inplace=False)",
        traceback='File "/x/torch/ao/quantization/quantize.py", line 3, in convert\n',
    )
    assert run_rule("QD006", make_facts(modules, events, flow=prepared)) != []  # no convert in sight: reported
    assert run_rule("QD006", make_facts(modules, events, flow=prepared, load_crash=raised)) == []
    (failure,) = run_rule("QD017", make_facts(modules, events, flow=prepared, load_crash=raised))
    assert failure.evidence["cause"] == "conv-padding-string" and "padding=0" in failure.fix


def test_qd006_fx_prepared_graph_module_points_at_the_first_float_layer():
    modules = [
        mod("", "GraphModule", F.CONTAINER),
        mod("activation_post_process_0", "HistogramObserver", F.OBSERVER, observed_min=-1.0, observed_max=1.0),
        mod("conv1", "ConvReLU2d", F.FLOAT, is_leaf=False, qconfig=X86_QCONFIG),
        mod("conv1.0", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG),
        mod("conv1.1", "ReLU", F.FLOAT, qconfig=X86_QCONFIG),
        mod("activation_post_process_1", "HistogramObserver", F.OBSERVER, observed_min=0.0, observed_max=2.0),
    ]
    events = [
        mev("activation_post_process_0", "HistogramObserver", [f32()], [f32()]),
        mev("conv1.0", "Conv2d", [f32()], [f32()]),
        mev("conv1.1", "ReLU", [f32()], [f32()]),
        mev("activation_post_process_1", "HistogramObserver", [f32()], [f32()]),
    ]
    prepared = F.FlowInfo(flow_kind("fx"), stage="prepared")
    (finding,) = run_rule("QD006", make_facts(modules, events, flow=prepared))
    assert finding.location.module == "conv1"
    assert finding.evidence["flow"] == "FX prepare_fx" and finding.evidence["observers"] == 2
    assert "quantized_model = convert_fx(quantized_model)" in finding.fix


def test_qd006_exported_qat_model_points_past_torch_exports_guards_fn():
    """torch.export's module() adds a `_guards_fn` (GuardsFn) that runs before anything: it is no layer to name."""
    modules = [
        mod("", "GraphModule", F.CONTAINER),
        mod("_guards_fn", "GuardsFn", F.FLOAT),
        mod("activation_post_process_0", "FusedMovingAvgObsFakeQuantize", F.FAKE_QUANT),
        mod("conv1", "Module", F.FLOAT),
    ]
    events = [
        mev("_guards_fn", "GuardsFn", [f32()], []),
        mev("activation_post_process_0", "FusedMovingAvgObsFakeQuantize", [f32()], [f32()]),
        mev("conv1", "Module", [f32()], [f32()]),
    ]
    prepared = F.FlowInfo(flow_kind("pt2e"), stage="prepared")
    (finding,) = run_rule("QD006", make_facts(modules, events, flow=prepared))
    assert finding.location.module == "conv1"


def test_qd006_eager_qat_counts_fake_quant_and_disables_observers_in_the_fix():
    modules = [
        mod("0", "QuantStub", F.QUANT_STUB),
        mod(
            "0.activation_post_process",
            "FusedMovingAvgObsFakeQuantize",
            F.FAKE_QUANT,
            observed_min=-1.0,
            observed_max=1.0,
        ),
        mod(
            "0.activation_post_process.activation_post_process",
            "MovingAverageMinMaxObserver",
            F.OBSERVER,
            observed_min=-1.0,
            observed_max=1.0,
        ),
        mod("1", "ConvBnReLU2d", F.QAT, is_leaf=False),
        mod("1.bn", "BatchNorm2d", F.FLOAT),
        mod("1.weight_fake_quant", "FusedMovingAvgObsFakeQuantize", F.FAKE_QUANT, observed_min=-1.0, observed_max=1.0),
    ]
    events = [mev("0", "QuantStub", [f32()], [f32()]), mev("1.bn", "BatchNorm2d", [f32()], [f32()])]
    (finding,) = run_rule("QD006", make_facts(modules, events, flow=F.FlowInfo(flow_kind("eager"), stage="prepared")))
    assert finding.location.module == "1"
    assert finding.evidence["flow"] == "eager QAT (prepare_qat)"
    assert finding.evidence["observers"] == 0  # the fake-quants' own observers are not counted twice
    assert "disable_observer" in finding.fix


def test_qd006_converts_with_the_flow_that_prepared_it_and_says_so_when_unknown():
    modules = [mod("0", "QuantStub", F.QUANT_STUB), mod("0.activation_post_process", "MinMaxObserver", F.OBSERVER)]
    modules.append(mod("1", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG))
    events = [mev("0", "QuantStub", [f32()], [f32()]), mev("1", "Conv2d", [f32()], [f32()])]
    pt2e = F.FlowInfo(flow_kind("pt2e"), stage="prepared")
    (finding,) = run_rule("QD006", make_facts(modules, events, flow=pt2e))
    assert finding.evidence["flow"] == "PT2E prepare_pt2e" and "convert_pt2e(" in finding.fix
    (unknown,) = run_rule("QD006", make_facts(modules, events))
    assert "did not identify" in unknown.evidence["flow"] and "convert step of the flow" in unknown.fix


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd006(check_fixture, fixture):
    assert "QD006" in codes(check_fixture(fixture))


def test_prepared_not_converted_reports_qd006(check_fixture):
    report = check_fixture("fixtures/prepared_not_converted.py")
    qd006 = [f for f in report.findings if f.rule == "QD006"]
    assert len(qd006) == 1
    assert qd006[0].location.module == "1"  # the first conv, not the QuantStub's observer
    assert qd006[0].evidence["observers"] == 4
    assert report.exit_code() == 1


def test_qat_model_left_with_fake_quant(check_fixture):
    report = check_fixture("fixtures/qat_not_converted.py")
    assert codes(report) == ["QD006"]
    (qd006,) = report.findings
    assert qd006.location.module == "1"
    assert qd006.evidence["flow"] == "eager QAT (prepare_qat)"
    assert "qat_model = torch.ao.quantization.convert(qat_model)" in qd006.fix


def test_fx_prepared_model_left_with_observers(check_fixture):
    report = check_fixture("fixtures/fx_prepared_not_converted.py")
    assert codes(report) == ["QD006"]
    (qd006,) = report.findings
    assert qd006.location.module == "conv1"
    assert qd006.evidence["flow"] == "FX prepare_fx"
    assert qd006.evidence["observers"] >= 4
    assert "prepared = convert_fx(prepared)" in qd006.fix
