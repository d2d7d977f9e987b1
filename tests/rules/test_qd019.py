"""QD019 pt2e-fp32-op: unit tests on hand-built Facts, then end to end over its fixture (needs torchao).

How float regions are found in a graph is qdoctor.diagnose.graph_patterns' job, tested in tests/test_flows.py.
"""

from __future__ import annotations

import pytest
from conftest import codes
from factsbuild import act, flow_kind, make_facts, node, run_rule

from qdoctor import facts as F
from qdoctor.facts import FlowInfo, QParams

FIXTURES = ["fixtures/pt2e_fp32_between.py"]
WEIGHT = QParams("torch.int8", -128, 127, per_channel=True, is_weight=True)
CONVERTED = FlowInfo(flow_kind("pt2e"), stage="converted")


def pt2e_graph(between: str | None = "silu"):
    """A converted PT2E graph: int8 conv `stem`, then ``between`` (an aten op in fp32, or nothing), then int8 conv
    `head`."""
    middle = []
    source = "conv2d"
    if between:
        middle = [node(between, F.NODE_FLOAT_OP, ["conv2d"], target=f"aten.{between}.default", module="block", line=19)]
        source = between
    return [
        node("x", F.NODE_INPUT, op="placeholder"),
        node("q", F.NODE_QUANTIZE, ["x"], qparams=act()),
        node("dq", F.NODE_DEQUANTIZE, ["q"], qparams=act()),
        node("w", F.NODE_ATTR, op="get_attr"),
        node("dqw", F.NODE_DEQUANTIZE, ["w"], qparams=WEIGHT),
        node("conv2d", F.NODE_REFERENCE_OP, ["dq", "dqw"], target="aten.conv2d.default", module="stem"),
        *middle,
        node("q2", F.NODE_QUANTIZE, [source], qparams=act()),
        node("dq2", F.NODE_DEQUANTIZE, ["q2"], qparams=act()),
        node("w2", F.NODE_ATTR, op="get_attr"),
        node("dqw2", F.NODE_DEQUANTIZE, ["w2"], qparams=WEIGHT),
        node("conv2d_1", F.NODE_REFERENCE_OP, ["dq2", "dqw2"], target="aten.conv2d.default", module="head"),
        node("output", F.NODE_OUTPUT, ["conv2d_1"], op="output"),
    ]


def test_qd019_quiet_when_every_op_between_quantized_ops_is_int8():
    assert run_rule("QD019", make_facts(graph=pt2e_graph(between=None), flow=CONVERTED)) == []


def test_qd019_names_the_fp32_op_its_line_and_the_layer_that_feeds_it():
    (finding,) = run_rule("QD019", make_facts(graph=pt2e_graph("silu"), flow=CONVERTED))
    assert finding.severity.value == "info"  # an activation: a round trip, not float compute
    assert finding.location.module == "block" and finding.location.line == 19
    assert finding.evidence["nodes"] == ["silu"] and finding.evidence["entries"] == ["conv2d"]
    assert finding.evidence["exits"] == ["q2"] and finding.evidence["heavy"] is False
    assert 'quantizer.set_module_name_qconfig("stem", None)' in finding.fix


def test_qd019_a_matmul_left_in_fp32_is_a_warning():
    (finding,) = run_rule("QD019", make_facts(graph=pt2e_graph("matmul"), flow=CONVERTED))
    assert finding.severity.value == "warning" and finding.evidence["heavy"] is True
    assert "costs its full float time" in finding.message


def test_qd019_ignores_other_flows():
    assert (
        run_rule("QD019", make_facts(graph=pt2e_graph("silu"), flow=FlowInfo(flow_kind("fx"), stage="converted"))) == []
    )


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd019(check_fixture, fixture):
    pytest.importorskip("torchao")
    assert "QD019" in codes(check_fixture(fixture))


def test_pt2e_fp32_ops_between_quantized_ops(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("fixtures/pt2e_fp32_between.py")
    qd019 = {f.location.module: f for f in report.findings if f.rule == "QD019"}
    assert set(qd019) == {"silu", "mean"}
    assert qd019["silu"].location.line == 19
    assert qd019["silu"].evidence["entries"] == ["conv2d"]
    assert 'set_module_name_qconfig("stem", None)' in qd019["silu"].fix
