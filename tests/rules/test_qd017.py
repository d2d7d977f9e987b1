"""QD017 flow-step-failed: unit tests on hand-built Facts, then end to end over its fixture (needs torchao).

Which exception maps to which cause is qdoctor.diagnose.flow_causes' job, tested in tests/test_flows.py; here the
rule reports the flow failure behind the crash the facts hold.
"""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import USER_FILE, crash, flow_kind, make_facts, mod, run_rule

from qdoctor import facts as F
from qdoctor.facts import FlowInfo

FIXTURES = ["fixtures/pt2e_export_failed.py", "fixtures/keep_going.py"]
EXPORT_TRACEBACK = 'File "/x/torch/export/_trace.py", line 3, in _export\n'


def export_crash(message: str = "Could not guard on data-dependent expression Eq(u0, 1)", type_="UserError"):
    return crash(message, module=None, line=16, type_=type_, phase="load", code="if x.abs().mean() > 1.0:")


def test_qd017_quiet_when_no_flow_step_failed():
    float_model = [mod("fc", "Linear", F.FLOAT)]
    assert run_rule("QD017", make_facts(float_model, flow=FlowInfo(flow_kind("pt2e"), stage="converted"))) == []
    other = crash("bad shape", module=None, line=3, type_="ValueError", phase="load")
    assert run_rule("QD017", make_facts(float_model, load_crash=other, flow=FlowInfo(flow_kind("none")))) == []


def test_qd017_reports_the_failed_step_at_the_users_line_with_its_fix():
    flow = FlowInfo(flow_kind("none"), torchao_version="0.18.0")
    (finding,) = run_rule("QD017", make_facts([mod("fc", "Linear", F.FLOAT)], load_crash=export_crash(), flow=flow))
    assert finding.severity.value == "error"
    assert finding.location.module is None
    assert finding.location.file == USER_FILE and finding.location.line == 16
    assert finding.location.code == "if x.abs().mean() > 1.0:"
    assert finding.message.startswith("export failed (UserError: Could not guard on data-dependent expression")
    assert "cannot decide such a branch at export time" in finding.message
    assert finding.evidence["cause"] == "data-dependent-control-flow" and finding.evidence["step"] == "export"
    assert finding.evidence["versions"] == "torch 2.14.1, torchao 0.18.0"
    assert "torch.cond" in finding.fix


def test_qd017_unrecognized_failure_still_points_at_its_line():
    odd = crash("something odd", module=None, line=16, phase="load", traceback=EXPORT_TRACEBACK)
    (finding,) = run_rule(
        "QD017", make_facts([mod("fc", "Linear", F.FLOAT)], load_crash=odd, flow=FlowInfo(flow_kind("none")))
    )
    assert "not a known quantization-flow failure" in finding.message
    assert finding.location.line == 16 and finding.evidence["cause"] == "unrecognized"
    assert finding.evidence["versions"] == "torch 2.14.1"


PREPARE_TRACEBACK = 'File "/x/torch/ao/quantization/quantize_fx.py", line 3, in prepare_fx\n'


@pytest.mark.parametrize(
    ("held", "says"),
    [
        ("_IncompatibleKeys", "what `load_state_dict(...)` returned"),
        ("collections.OrderedDict", "a state_dict, not the model"),
        ("NoneType", "returns nothing was assigned"),
    ],
)
def test_qd017_a_step_handed_what_a_call_returned_says_what_the_name_holds(held, says):
    """The tutorial's `model_to_quantize = model.load_state_dict(...)`, `model = torch.load(state_dict_file)`,
    `model = quantize_(model, config)`: the step fails on the first nn.Module method it calls."""
    message = f"'{held}' object has no attribute 'named_children'"
    handed = crash(message, module=None, line=7, type_="AttributeError", phase="load", traceback=PREPARE_TRACEBACK)
    facts = make_facts([mod("fc", "Linear", F.FLOAT)], load_crash=handed, flow=FlowInfo(flow_kind("none")))
    (finding,) = run_rule("QD017", facts)
    assert finding.evidence["cause"] == "not-a-model" and finding.evidence["step"] == "prepare_fx"
    assert says in finding.message and finding.location.line == 7
    # an attribute error on another object inside the step is not taken for one
    other = crash(
        "'Graph' object has no attribute 'nodes_map'", None, 7, "AttributeError", "load", "", PREPARE_TRACEBACK
    )
    facts = make_facts([mod("fc", "Linear", F.FLOAT)], load_crash=other, flow=FlowInfo(flow_kind("none")))
    assert run_rule("QD017", facts)[0].evidence["cause"] == "unrecognized"
    # nor is a None bias moved inside the step (`.to` is every tensor's API too)
    bias = crash("'NoneType' object has no attribute 'to'", None, 7, "AttributeError", "load", "", PREPARE_TRACEBACK)
    facts = make_facts([mod("fc", "Linear", F.FLOAT)], load_crash=bias, flow=FlowInfo(flow_kind("none")))
    assert run_rule("QD017", facts)[0].evidence["cause"] == "unrecognized"


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd017(check_fixture, fixture):
    pytest.importorskip("torchao")
    assert "QD017" in codes(check_fixture(fixture))


def test_pt2e_export_failure_is_mapped_to_data_dependent_control_flow(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("fixtures/pt2e_export_failed.py")
    (finding,) = report.findings
    assert finding.rule == "QD017" and finding.evidence["cause"] == "data-dependent-control-flow"
    assert findings_of(report, "QD017") == [finding]
    assert finding.location.line == 16  # if x.abs().mean() > 1.0:
    assert "torch.cond" in finding.fix
    assert not any("not quantized" in note for note in report.notes)
