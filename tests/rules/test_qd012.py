"""QD012 pt2e-not-lowered: unit tests on hand-built Facts, then end to end over its fixtures.

The PT2E fixtures need torchao (they skip without it); the compiled one calls torch.compile, which takes a minute
or more on 2 cores: it runs only with QDOCTOR_SLOW_TESTS=1.
"""

from __future__ import annotations

import os

import pytest
from conftest import as_json, codes, fixture_path, run_check
from factsbuild import act, flow_kind, make_facts, node, run_rule

from qdoctor import facts as F
from qdoctor.facts import CompileInfo, FlowInfo, QParams

FIXTURES = ["fixtures/pt2e_not_lowered.py"]
SLOW_FIXTURES = ["fixtures/pt2e_compiled_no_freezing.py"]
slow = pytest.mark.skipif(
    os.environ.get("QDOCTOR_SLOW_TESTS") != "1", reason="calls torch.compile (minutes on 2 cores): QDOCTOR_SLOW_TESTS=1"
)


def pt2e_graph():
    """A converted PT2E conv in reference form: dequantize -> aten.conv2d -> (float output)."""
    weight = QParams("torch.int8", -128, 127, per_channel=True, is_weight=True)
    return [
        node("x", F.NODE_INPUT, op="placeholder"),
        node("q", F.NODE_QUANTIZE, ["x"], qparams=act()),
        node("dq", F.NODE_DEQUANTIZE, ["q"], qparams=act()),
        node("w", F.NODE_ATTR, op="get_attr"),
        node("dqw", F.NODE_DEQUANTIZE, ["w"], qparams=weight),
        node("conv2d", F.NODE_REFERENCE_OP, ["dq", "dqw"], target="aten.conv2d.default", module="conv"),
        node("output", F.NODE_OUTPUT, ["conv2d"], op="output"),
    ]


@pytest.mark.parametrize(
    "compiled, fires",
    [
        (None, True),
        (CompileInfo(backend="inductor", freezing=False, freezing_source="default (off)"), True),
        (CompileInfo(backend="eager", freezing=True), True),
        (CompileInfo(backend="inductor", freezing=True, freezing_source="torch._inductor.config"), False),
    ],
)
def test_qd012_fires_unless_compiled_by_inductor_with_freezing(compiled, fires):
    facts = make_facts(graph=pt2e_graph(), flow=FlowInfo(flow_kind("pt2e"), stage="converted", compiled=compiled))
    findings = run_rule("QD012", facts)
    assert bool(findings) == fires
    if fires:
        assert findings[0].location.module == ""
        assert "freezing = True" in findings[0].fix


def test_qd012_ignores_fx_and_prepared_models():
    assert run_rule("QD012", make_facts(graph=pt2e_graph(), flow=FlowInfo(flow_kind("fx"), stage="converted"))) == []
    assert run_rule("QD012", make_facts(graph=pt2e_graph(), flow=FlowInfo(flow_kind("pt2e"), stage="prepared"))) == []


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd012(check_fixture, fixture):
    pytest.importorskip("torchao")
    assert "QD012" in codes(check_fixture(fixture))


def test_pt2e_run_eagerly_reports_qd012_at_convert_line(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("fixtures/pt2e_not_lowered.py")
    assert report.facts.flow.flow == "pt2e" and report.facts.flow.stage == "converted"
    assert codes(report) == ["QD012"]
    (finding,) = report.findings
    assert finding.location.module == "" and finding.location.line == 35  # quantized_model = convert_pt2e(prepared)
    assert finding.evidence["reference_ops"] >= 4
    assert "X86InductorQuantizer" in report.facts.flow.quantizers[0]
    document = as_json(report)
    assert document["flow"]["flow"] == "pt2e" and document["graph"]["kinds"]["reference_op"] >= 4


@slow
def test_pt2e_compiled_without_freezing_reports_qd012():
    pytest.importorskip("torchao")
    report = run_check(fixture_path(SLOW_FIXTURES[0]))
    (finding,) = [f for f in report.findings if f.rule == "QD012"]
    assert finding.evidence["compile_backend"] == "inductor" and finding.evidence["inductor_freezing"] is False
    assert finding.location.line == 19  # model = torch.compile(converted)
    assert report.facts.flow.compiled.first_call_s is not None


def test_qd012_with_deploy_reports_an_int8_program_without_delegate():
    from deployed import grid_sample_deployment

    flow = FlowInfo(flow_kind("pt2e"), stage="converted")
    deploy = grid_sample_deployment(partitions=1)
    assert run_rule("QD012", make_facts(graph=pt2e_graph(), flow=flow, deploy=deploy)) == []  # lowered: not QD012
    deploy.programs[0].partitions = 0
    (finding,) = run_rule("QD012", make_facts(graph=pt2e_graph(), flow=flow, deploy=deploy))
    assert "no XNNPACK delegate" in finding.message and "XnnpackPartitioner" in finding.fix
