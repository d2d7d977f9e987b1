"""QD014 unexplained-crash: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import crash, fev, healthy_facts, make_facts, mod, q, run_rule

from qdoctor import facts as F

FIXTURES = ["fixtures/forward_topk_error.py", "fixtures/script_fails_after_model.py", "fixtures/keep_going.py"]


def test_qd014_quiet_without_a_crash():
    assert run_rule("QD014", healthy_facts()) == []


def test_qd014_reports_what_nobody_explains_with_location():
    raised = crash("shape '[1, 8192]' is invalid for input of size 2048", module="", line=21)
    facts = make_facts(
        [mod("conv", "Conv2d", F.QUANTIZED)], [fev("Tensor.reshape", "", [q()], [], line=21)], crash=raised
    )
    [finding] = run_rule("QD014", facts)
    assert "not a known quantization failure" in finding.message
    assert finding.location.module == "" and finding.location.line == 21 and finding.severity.value == "error"


def test_qd014_says_what_a_name_used_as_the_model_holds():
    """`model_to_quantize = model.load_state_dict(sd)` then `model_to_quantize.eval()`: still QD014 (not a
    quantization failure), and the finding says the name holds load_state_dict's result, not the model."""
    raised = crash("'_IncompatibleKeys' object has no attribute 'eval'", None, 9, "AttributeError", "load", "m.eval()")
    [finding] = run_rule("QD014", make_facts([mod("fc", "Linear", F.FLOAT)], [], load_crash=raised))
    assert "what `load_state_dict(...)` returned" in finding.message and finding.location.line == 9
    other = crash("'Tensor' object has no attribute 'eval'", None, 9, "AttributeError", "load", "m.eval()")
    [finding] = run_rule("QD014", make_facts([mod("fc", "Linear", F.FLOAT)], [], load_crash=other))
    assert "the name holds" not in finding.message


def test_qd014_a_loop_that_raised_before_its_convert_leads_to_qd006():
    """The PT2E QAT tutorial pasted as written: its training loop raises (NameError: optimizer) before the
    convert_pt2e written further down the same loop, so the model stays prepared: QD006 is that crash's consequence."""
    script = (
        "prepared = prepare_qat_pt2e(exported, quantizer)\n"
        "for nepoch in range(2):\n"
        "    train_one_epoch(prepared, criterion, optimizer)\n"
        "    if nepoch % 2:\n"
        "        quantized = convert_pt2e(copy.deepcopy(prepared))\n"
        "print(quantized)\n"
    )
    raised = crash("name 'optimizer' is not defined", None, 3, "NameError", "load", "train_one_epoch(...)")
    facts = make_facts([mod("fc", "Linear", F.FLOAT)], [], load_crash=raised, script=script)
    [finding] = run_rule("QD014", facts)
    assert finding.leads_to == ("QD006",)
    assert "`quantized = convert_pt2e(copy.deepcopy(prepared))` (line 5), which never ran" in finding.message
    # a crash after the convert, or in a statement without one, leads nowhere
    later = crash("name 'quantized' is not defined", None, 6, "NameError", "load", "print(quantized)")
    [finding] = run_rule("QD014", make_facts([mod("fc", "Linear", F.FLOAT)], [], load_crash=later, script=script))
    assert finding.leads_to == () and "never ran" not in finding.message


def test_qd014_reports_a_known_cause_whose_rule_is_not_registered(monkeypatch):
    # QD003 owns NoQEngine; a build of qdoctor without that rule must still show the crash
    from qdoctor.diagnose import registry

    raised = crash("quantized engine NoQEngine is not supported", module=None, line=5, phase="load")
    facts = make_facts([mod("conv", "Conv2d", F.QUANTIZED)], [], load_crash=raised)
    registry.all_rules()
    monkeypatch.delitem(registry._REGISTRY, "QD003")
    [finding] = run_rule("QD014", facts)
    assert finding.severity.value == "warning"  # the script raised, not the model
    assert finding.location.line == 5


def test_qd014_load_crash_same_as_run_crash_is_reported_once():
    run = crash("boom", module="", line=21, type_="ValueError")
    load = crash("boom", module=None, line=40, type_="ValueError", phase="load")
    facts = make_facts(
        [mod("conv", "Conv2d", F.QUANTIZED)],
        [fev("Tensor.view", "", [q()], [], line=21)],
        crash=run,
        load_crash=load,
    )
    assert len(run_rule("QD014", facts)) == 1


def test_qd014_reports_a_second_script_crash_that_qd003_does_not_read():
    # QD003 reads Facts.crash, the run's crash when there is one: a different NoQEngine crash of the script is ours
    run = crash("boom", module="", line=21, type_="ValueError")
    load = crash("quantized engine NoQEngine is not supported", module=None, line=40, phase="load")
    facts = make_facts(
        [mod("conv", "Conv2d", F.QUANTIZED)],
        [fev("Tensor.view", "", [q()], [], line=21)],
        crash=run,
        load_crash=load,
    )
    assert sorted(f.location.line for f in run_rule("QD014", facts)) == [21, 40]


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd014(check_fixture, fixture):
    assert "QD014" in codes(check_fixture(fixture))


def test_unexplained_crash(check_fixture):
    report = check_fixture("fixtures/forward_topk_error.py")
    [finding] = findings_of(report, "QD014")
    assert finding.location.line == 22 and finding.location.module == ""
    assert "selected index k out of range" in finding.message


def test_script_crash_after_the_model_is_a_warning_with_its_line(check_fixture):
    report = check_fixture("fixtures/script_fails_after_model.py")
    [finding] = findings_of(report, "QD014")
    assert finding.severity.value == "warning" and finding.location.line == 11
    assert finding.evidence["type"] == "FileNotFoundError" and finding.evidence["phase"] == "load"
