"""Crash diagnosis has one home, at rule time: Facts hold the crash, rules claim its cause (``@rule(owns=...)``).

What is explained (QD014 stays quiet) and which rules run when a quantization flow failed before anything was
quantized both follow from those claims. Hand-built facts: no model runs.
"""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

import pytest
from factsbuild import flow_kind

from qdoctor import facts as F
from qdoctor.diagnose import registry
from qdoctor.diagnose.cause import Cause
from qdoctor.diagnose.crash_causes import distinct_crashes
from qdoctor.diagnose.findings import Severity
from qdoctor.diagnose.flow_causes import FLOW_CAUSES
from qdoctor.facts import CrashInfo, Environment, Facts, FlowInfo, ModuleInfo, Target, Trace
from qdoctor.report.model import Report, to_dict
from qdoctor.run.check import CheckOptions, build_report

PACKAGE = Path(__file__).resolve().parents[1] / "qdoctor"
USER_FILE = "/home/user/model.py"
EXPORT_FAILED = "Could not guard on data-dependent expression Eq(u0, 1)"


def environment() -> Environment:
    return Environment(
        torch_version="2.14.1",
        python_version="3.11.9",
        platform="Linux",
        machine="x86_64",
        cpu_model="test",
        cpu_isa=["avx2"],
        cpu_capability="AVX2",
        cpu_count=2,
        quantized_engine="x86",
        supported_engines=["x86", "qnnpack"],
        num_threads=2,
        num_interop_threads=2,
        thread_env={},
    )


def module(path: str, kind: str) -> ModuleInfo:
    return ModuleInfo(path=path, type="Linear", type_module="test", kind=kind, is_leaf=True, training=False)


def crash(message: str, type_: str = "RuntimeError", phase: str = "load", line: int = 12) -> CrashInfo:
    return CrashInfo(type=type_, message=message, phase=phase, file=USER_FILE, line=line, code="x = step()")


def facts(kind: str = F.QUANTIZED, load_crash: CrashInfo | None = None, flow: bool = True) -> Facts:
    target = Target(
        spec=USER_FILE,
        file=USER_FILE,
        subject_name="model",
        float_name=None,
        inputs_name=None,
        inputs=[],
        load_crash=load_crash,
    )
    return Facts(
        target=target,
        environment=environment(),
        modules=[module("", F.CONTAINER), module("fc", kind)],
        trace=Trace(events=[], output=[]),
        flow=FlowInfo(flow_kind("none"), torchao_version="0.18.0") if flow else None,
    )


@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry with every shipped rule, on a copy that the test may add rules to."""
    registry.all_rules()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def register_owner(code: str, *owned: Cause) -> None:
    @registry.rule(code, f"test-{code.lower()}", Severity.ERROR, "test rule", owns=owned)
    def check(facts: Facts):
        for c in distinct_crashes(facts):
            if any(cause.matches(c, facts) for cause in owned):
                yield check.finding(f"{code} explains {c.type}")


def odd(c: CrashInfo, _facts: Facts) -> bool:
    return "odd failure" in c.message


ODD = Cause("odd-failure", odd)
ODD_FLOW_STEP = Cause("odd-flow-step", odd, flow_step=True)


def qd014(facts_: Facts):
    return list(registry.get_rule("QD014").check(facts_))


# ------------------------------------------------------------------------------------------ explained or not


def test_a_crash_no_rule_owns_goes_to_qd014():
    f = facts(load_crash=crash("an odd failure"))
    assert registry.owners(f.target.load_crash, f) == []
    assert registry.unexplained_crashes(f) == [f.target.load_crash]
    [finding] = qd014(f)
    assert "not a known quantization failure" in finding.message and finding.location.line == 12


def test_a_rule_that_owns_the_cause_explains_the_crash(scratch_registry):
    f = facts(load_crash=crash("an odd failure"))
    register_owner("QD990", ODD)
    assert [r.code for r in registry.owners(f.target.load_crash, f)] == ["QD990"]
    assert registry.unexplained_crashes(f) == [] and qd014(f) == []
    findings, _ = registry.run_rules(f)
    assert [x.rule for x in findings] == ["QD990"]


def test_ignoring_the_owner_does_not_make_its_crash_unexplained(scratch_registry):
    f = facts(load_crash=crash("an odd failure"))
    register_owner("QD990", ODD)
    findings, _ = registry.run_rules(f, ignore=["QD990"])
    assert findings == []  # silenced by the user, not handed to QD014


def test_a_cause_has_one_owner(scratch_registry):
    register_owner("QD990", ODD)
    with pytest.raises(ValueError, match="odd-failure owned by QD990 and QD991"):
        register_owner("QD991", ODD)


def test_every_shipped_crash_cause_has_exactly_one_owner():
    owned = [cause.id for r in registry.all_rules() for cause in r.owns]
    assert len(owned) == len(set(owned))
    assert {c.id for c in FLOW_CAUSES} <= set(owned)


def test_a_flow_failure_on_a_quantized_model_is_explained_by_its_owner():
    # QD017 says what failed; QD014 no longer repeats the same crash as "not a known quantization failure"
    f = facts(load_crash=crash(EXPORT_FAILED, type_="GuardOnDataDependentSymNode"))
    assert [r.code for r in registry.owners(f.target.load_crash, f)] == ["QD017"]
    findings, _ = registry.run_rules(f, select=["QD014", "QD017"])
    assert [(x.rule, x.evidence.get("cause")) for x in findings] == [("QD017", "data-dependent-control-flow")]


def test_flow_causes_need_the_flow_facts():
    # like the gathered failure before it: without flow facts (torchao's version among them) no flow failure
    f = facts(load_crash=crash(EXPORT_FAILED, type_="GuardOnDataDependentSymNode"), flow=False)
    assert registry.flow_failure_rules(f) == []
    assert len(qd014(f)) == 1


# ----------------------------------------------------------------------------------- flow failed, model float


def codes_of(report: Report) -> list[str]:
    return [x.rule for x in report.findings]


def test_flow_failed_before_quantizing_runs_only_the_owning_rules():
    f = facts(kind=F.FLOAT, load_crash=crash(EXPORT_FAILED, type_="GuardOnDataDependentSymNode"))
    assert not f.is_quantized
    assert [r.code for r in registry.flow_failure_rules(f)] == ["QD017"]
    report = build_report(f, CheckOptions())
    assert codes_of(report) == ["QD017"]
    assert report.skipped == []
    assert not any("not quantized" in note for note in report.notes)


def test_flow_failed_path_keeps_the_users_selection():
    f = facts(kind=F.FLOAT, load_crash=crash(EXPORT_FAILED, type_="GuardOnDataDependentSymNode"))
    assert codes_of(build_report(f, CheckOptions(ignore=["QD017"]))) == []
    assert codes_of(build_report(f, CheckOptions(select=["QD014"]))) == []


def test_flow_failed_path_adds_a_rule_that_claims_a_flow_step_cause(scratch_registry):
    f = facts(kind=F.FLOAT, load_crash=crash("an odd failure"))
    # owns the crash, but not as a flow step: on a float model only the rules that report the crash run (a crash in
    # the report's header always has a finding), not the rules that would describe the float model
    register_owner("QD990", ODD)
    assert codes_of(build_report(f, CheckOptions())) == ["QD990"]
    register_owner("QD991", ODD_FLOW_STEP)
    assert codes_of(build_report(f, CheckOptions())) == ["QD990", "QD991"]


def test_float_model_without_a_flow_failure_has_nothing_to_diagnose_but_its_crash():
    f = facts(kind=F.FLOAT, load_crash=crash("an odd failure"))
    report = build_report(f, CheckOptions())
    # the crash is in the header, so it has a finding (QD014: no rule owns it); nothing else is diagnosed
    assert codes_of(report) == ["QD014"] and any("not quantized" in note for note in report.notes)
    assert build_report(facts(kind=F.FLOAT), CheckOptions()).findings == []


# --------------------------------------------------------------------------------------- facts and the JSON


def test_facts_hold_the_crash_not_its_explanation():
    assert "failure" not in {field.name for field in fields(FlowInfo)}
    assert not hasattr(F, "FlowFailure")


def test_json_flow_keeps_its_failure_field():
    f = facts(kind=F.FLOAT, load_crash=crash(EXPORT_FAILED, type_="GuardOnDataDependentSymNode"))
    flow = to_dict(build_report(f, CheckOptions()))["flow"]
    assert list(flow) == [
        "flow",
        "stage",
        "saved_format",
        "source",
        "compiled",
        "quantizers",
        "torchao_version",
        "fx_backend_config",
        "fx_qconfig",
        "failure",
        "notes",
    ]
    assert list(flow["failure"]) == ["step", "cause", "explanation", "fix", "error", "file", "line", "code", "layers"]
    assert flow["failure"]["cause"] == "data-dependent-control-flow" and flow["failure"]["line"] == 12
    quiet = to_dict(build_report(facts(), CheckOptions()))["flow"]
    assert quiet["failure"] is None and list(quiet)[-2:] == ["failure", "notes"]


# --------------------------------------------------------------------------- no rule codes outside the rules

RULE_CODE = re.compile(r"QD\d{3}")
# Each rule module declares itself, and each fix module names the one rule whose finding it fixes
# (@transform("QD004", ...)): both are registrations, one per module, never a list of codes.
DECLARING = ("diagnose/rules", "prescribe/fixes")


def rule_code_literals(path: Path) -> list[int]:
    """Lines of string literals that are a rule code (docstrings, comments and prose that mention one don't count)."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and RULE_CODE.fullmatch(node.value)
    ]


def test_no_module_outside_the_rules_dispatches_on_a_rule_code():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.relative_to(PACKAGE).as_posix().startswith(DECLARING)
        for line in rule_code_literals(path)
    ]
    assert not found, "rule codes written outside the rules (derive them from the registry):\n" + "\n".join(found)


def test_the_rule_code_scan_sees_a_hand_listed_code(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""Mentions QD017 in prose."""\nFLOW_RULES = ("QD017",)  # QD017\n')
    assert rule_code_literals(bad) == [2]
