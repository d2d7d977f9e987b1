"""QD018 pt2e-wrong-quantizer: unit tests on hand-built Facts, then end to end over its fixture (x86, torchao)."""

from __future__ import annotations

import pytest
import torch
from conftest import codes, findings_of
from factsbuild import act, env, flow_kind, make_facts, node, run_rule

from qdoctor import facts as F
from qdoctor.facts import FlowInfo

FIXTURES = ["fixtures/pt2e_xnnpack_on_x86.py"]
ON_X86 = torch.backends.cpu.get_cpu_capability().startswith("AVX")
SIGNED = [node("q", F.NODE_QUANTIZE, qparams=act("torch.int8", -128, 127))]
UNSIGNED = [node("q", F.NODE_QUANTIZE, qparams=act())]


def test_qd018_flags_xnnpack_on_x86_and_x86_quantizer_on_arm():
    script = "quantizer = XNNPACKQuantizer()\n"
    flow = FlowInfo(flow_kind("pt2e"), stage="converted", quantizers=["x.XNNPACKQuantizer"])
    (finding,) = run_rule("QD018", make_facts(graph=SIGNED, flow=flow, script=script))
    assert finding.location.line == 1 and "X86InductorQuantizer" in finding.fix
    x86 = FlowInfo(flow_kind("pt2e"), stage="converted", quantizers=["x.X86InductorQuantizer"])
    assert run_rule("QD018", make_facts(graph=UNSIGNED, flow=x86)) == []
    (arm,) = run_rule("QD018", make_facts(graph=UNSIGNED, flow=x86, environment=env("aarch64", engine="qnnpack")))
    assert "ArmInductorQuantizer" in arm.fix


def test_qd018_points_at_the_code_that_builds_the_quantizer_not_a_comment_naming_it():
    script = "# the flow: torch.export, XNNPACKQuantizer(is_qat=True), prepare_qat_pt2e\nimport torch\nq = XNNPACKQuantizer()\n"
    flow = FlowInfo(flow_kind("pt2e"), stage="converted", quantizers=["x.XNNPACKQuantizer"])
    (finding,) = run_rule("QD018", make_facts(graph=SIGNED, flow=flow, script=script))
    assert finding.location.line == 3 and finding.location.code == "q = XNNPACKQuantizer()"


def test_qd018_reads_signed_activations_when_the_quantizer_object_is_gone():
    # The script no longer holds the quantizer (no name, no line): the graph's signed int8 activations are the sign.
    flow = FlowInfo(flow_kind("pt2e"), stage="converted")
    (finding,) = run_rule("QD018", make_facts(graph=SIGNED, flow=flow))
    assert finding.severity.value == "warning"
    assert finding.location.module == "" and finding.location.line is None
    assert "was quantized with a quantizer with signed int8 activations" in finding.message
    assert "(activations torch.int8 [-128, 127])" in finding.message and "x86 CPU" in finding.message
    assert finding.evidence["quantizers"] == [] and finding.evidence["activation_qparams"] == ["torch.int8 [-128, 127]"]
    assert "xiq.X86InductorQuantizer()" in finding.fix
    # the same graph quantized for x86 (uint8 activations) is what that fix produces: nothing to report
    assert run_rule("QD018", make_facts(graph=UNSIGNED, flow=flow)) == []


def test_qd018_ignores_other_flows():
    assert run_rule("QD018", make_facts(graph=SIGNED, flow=FlowInfo(flow_kind("fx"), stage="converted"))) == []


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.skipif(not ON_X86, reason="x86 only")
@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd018(check_fixture, fixture):
    pytest.importorskip("torchao.testing.pt2e._xnnpack_quantizer")
    assert "QD018" in codes(check_fixture(fixture))


@pytest.mark.skipif(not ON_X86, reason="x86 only")
def test_pt2e_xnnpack_quantizer_on_x86(check_fixture):
    pytest.importorskip("torchao.testing.pt2e._xnnpack_quantizer")
    report = check_fixture("fixtures/pt2e_xnnpack_on_x86.py")
    (finding,) = findings_of(report, "QD018")
    assert finding.location.line == 15  # quantizer = XNNPACKQuantizer()...
    assert finding.evidence["activation_qparams"] == ["torch.int8 [-128, 127]"]


# ------------------------------------------------------------------------------------------------ --deploy


def _deployed_facts(quantizer: str, made_for: str | None):
    from deployed import grid_sample_deployment

    deploy = grid_sample_deployment()
    deploy.quantizer, deploy.quantizer_made_for = quantizer.rsplit(".", 1)[-1], made_for
    flow = FlowInfo(flow_kind("pt2e"), stage="converted", quantizers=[quantizer])
    return make_facts(graph=[], flow=flow, deploy=deploy, environment=env())


def test_qd018_with_deploy_flags_a_quantizer_made_for_another_backend():
    facts = _deployed_facts("torchao.X86InductorQuantizer", "x86 Inductor (oneDNN)")
    (finding,) = run_rule("QD018", facts)
    assert "made for x86 Inductor (oneDNN)" in finding.message and "deployed to XNNPACK" in finding.message
    assert "XNNPACKQuantizer()" in finding.fix


def test_qd018_with_deploy_accepts_the_xnnpack_quantizer_on_x86():
    assert run_rule("QD018", _deployed_facts("executorch.XNNPACKQuantizer", None)) == []


def test_x86_quantizer_deployed_to_xnnpack_reports_qd018():
    from deployed import deployed_report, need_executorch

    need_executorch()
    report = deployed_report("fixtures/executorch/x86_quantizer_to_xnnpack.py")
    (finding,) = findings_of(report, "QD018")
    assert finding.location.line == 16 and report.facts.deploy.quantizer_made_for == "x86 Inductor (oneDNN)"
    assert "QD012" not in codes(report)
