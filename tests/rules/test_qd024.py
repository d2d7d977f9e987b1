"""QD024 unexplained-slowdown: unit tests on hand-built Facts, the after-fixes check, then end to end.

Whether int8 is slower than float on a given run is a measurement, and no test asserts a wall-clock speed: the end to
end tests replace the benchmark's clock with fixed timings (int8 3x slower than float, as tests/rules/test_qd008.py
does); loading, tracing, profiling and the rules are real. Both directions are checked: QD024 reports on a fixture
where no rule explains the slowdown, and stays quiet on one where QD003 does.
"""

from __future__ import annotations

import dataclasses

import pytest
from conftest import codes, findings_of, fixed_rounds, fixture_path, run_check
from factsbuild import env, healthy_chain, make_facts, profile, run_rule, timing

from qdoctor import facts as F
from qdoctor.diagnose.registry import all_rules, get_rule, run_after_fixes, run_rules
from qdoctor.diagnose.rules.qd024_unexplained_slowdown import attribute_access, extra_by_module
from qdoctor.facts import Benchmarks, OpTime, Ratio
from qdoctor.facts.prescription import FixAll

FIXTURES = [
    "fixtures/healthy_static_wide.py",  # under the fixed clock no rule explains the slowdown: QD024 reports
    "fixtures/qnnpack_engine_on_x86.py",  # QD003 explains it: QD024 stays quiet
    "fixtures/depthwise_conv1d_int8.py",  # QD023 names the slow depthwise convolutions: QD024 stays quiet
]
INT8_MS, FP32_MS = 6.0, 2.0  # the fixed clock: int8 3x slower, IQRs far apart


def slow_facts(subject_ms=6.0, float_ms=2.0, sub_iqr=0.1, engine="x86", paired=None, origin="contract"):
    """healthy_chain() (nothing for another rule to find) measured ``subject_ms`` against float ``float_ms``; the
    int8 conv costs 3.5 ms more than the float conv, the int8 fc 0.1 ms more."""
    modules, events = healthy_chain()
    facts = make_facts(
        modules,
        events,
        environment=env(engine=engine),
        profile=profile(
            5.0,
            [("quant", "Quantize", F.QUANT_STUB, 0.2), ("conv", "ConvReLU2d", F.QUANTIZED, 4.0)]
            + [("fc", "Linear", F.QUANTIZED, 0.3), ("dequant", "DeQuantize", F.DEQUANT_STUB, 0.1)],
            shares={F.CAT_QDQ: 0.06},
        ),
        float_profile=profile(
            1.5, [("conv", "Conv2d", F.FLOAT, 0.5), ("fc", "Linear", F.FLOAT, 0.2)], {F.CAT_FLOAT: 1}
        ),
        benchmark=Benchmarks(subject=timing(subject_ms, sub_iqr), float_baseline=timing(float_ms, 0.05)),
        sqnr=35.0,
    )
    facts.modules[2].source = F.SourceLocation("/home/user/model.py", 12, "self.conv = nn.Conv2d(3, 8, 3)")
    facts.profile.top_ops = [
        OpTime("quantized::conv2d_relu", F.CAT_INT8, 3.8, 1),
        OpTime("aten::clone", F.CAT_OTHER, 0.2, 1),
    ]
    facts.float_profile.top_ops = [OpTime("aten::mkldnn_convolution", F.CAT_FLOAT, 0.45, 1)]
    if paired is not None:
        facts.benchmark.paired_speedup = paired
    facts.target.inputs_origin = origin
    if origin == F.INPUTS_INFERRED:
        facts.target.inputs_name = None
        facts.target.inputs_inferred = "no input tensor in the script; made a random one from the first layer"
    return facts


def test_qd024_reports_a_clear_slowdown_no_rule_explains_and_where_the_time_goes():
    [finding] = run_rule("QD024", slow_facts())
    assert finding.location.module == "conv" and finding.location.line == 12  # the largest int8-minus-float time
    assert "3.00x slower than float" in finding.message and "no other finding explains it" in finding.message
    assert "`conv` (ConvReLU2d, +3.50 ms)" in finding.message
    assert "--trace-dir" in finding.message
    evidence = finding.evidence
    assert [m["module"] for m in evidence["extra_by_module"]] == ["conv", "quant", "dequant", "fc"]  # ties by path
    assert evidence["extra_by_module"][0] == {
        "module": "conv",
        "type": "ConvReLU2d",
        "int8_ms": 4.0,
        "float_ms": 0.5,
        "extra_ms": 3.5,
    }
    assert evidence["extra_by_category"][0]["category"] == "int8 kernels"  # 4.7 ms against 0 in float
    assert evidence["extra_by_category"][-1]["category"] == "float compute"  # the time int8 saved: negative
    assert evidence["extra_by_op"][0] == {"op": "quantized::conv2d_relu", "calls": 1, "extra_ms": 3.8}
    assert {"QD003", "QD004", "QD005", "QD006", "QD008"} <= set(evidence["ruled_out"])
    assert "backend-mismatch (QD003)" in finding.message  # what was checked and ruled out, by name
    assert "float_model.conv.qconfig = None" in finding.fix
    assert "quant.qconfig" not in finding.fix  # only layers that compute in int8 are worth keeping in float


def test_qd024_uses_the_paired_interval_when_the_measurement_gives_one():
    # medians 3x apart, but the paired rounds' interval straddles 1.0: within noise, no verdict
    assert run_rule("QD024", slow_facts(paired=Ratio(0.5, 0.3, 1.2, "paired-bootstrap"))) == []
    [finding] = run_rule("QD024", slow_facts(subject_ms=2.1, paired=Ratio(0.6, 0.55, 0.65, "paired-bootstrap")))
    assert finding.evidence["speedup"] == "0.60x (0.55-0.65)" and finding.evidence["interval"] == "paired-bootstrap"


@pytest.mark.parametrize(
    "change",
    [
        dict(subject_ms=1.5),  # int8 faster
        dict(subject_ms=2.05),  # medians apart, spreads overlap: no verdict
        dict(sub_iqr=8.0),  # a noisy measurement: the interval reaches 1.0
    ],
)
def test_qd024_quiet_without_a_clear_slowdown(change):
    assert run_rule("QD024", slow_facts(**change)) == []


def test_qd024_quiet_when_a_rule_that_explains_slowness_reports():
    facts = slow_facts(engine="qnnpack")  # qnnpack's ARM kernels on x86: QD003 explains it
    findings, _ = run_rules(facts)
    assert "QD003" in codes_of(findings) and "QD024" not in codes_of(findings)
    # ignoring QD003 silences its finding; it does not make the slowdown unexplained
    findings, _ = run_rules(facts, ignore=["QD003"])
    assert codes_of(findings) == []


def test_the_rules_that_explain_slowness_are_declared_in_the_registry_only():
    explaining = {r.code for r in all_rules() if r.explains_slowdown}
    assert {"QD003", "QD005", "QD006", "QD008"} <= explaining
    assert "QD024" not in explaining and get_rule("QD024").slowdown_residual
    assert [r.code for r in all_rules() if r.slowdown_residual] == ["QD024"]


def test_invented_inputs_put_a_caveat_on_timing_findings_only():
    facts = slow_facts(origin=F.INPUTS_INFERRED)
    findings, _ = run_rules(facts)
    [qd024] = [f for f in findings if f.rule == "QD024"]
    assert "invented" in qd024.evidence["inputs_caveat"] and "1x8" in qd024.evidence["inputs_caveat"]
    assert all("inputs_caveat" not in f.evidence for f in findings if f.rule != "QD024")
    facts = slow_facts()  # the script's example_inputs: no caveat
    assert all("inputs_caveat" not in f.evidence for f in run_rules(facts)[0])


def test_qd024_is_skipped_without_a_benchmark():
    facts = slow_facts()
    facts.benchmark = None
    facts.unavailable["benchmark"] = "timing disabled (--no-bench)"
    _, skipped = run_rules(facts, select=["QD024"])
    assert [s.rule for s in skipped] == ["QD024"]


def test_qd024_without_profiles_still_reports_and_says_it_cannot_say_where():
    facts = slow_facts()
    facts.profile = facts.float_profile = None
    [finding] = run_rule("QD024", facts)
    assert finding.location.module is None and "cannot say where the extra time goes" in finding.message


def test_attribute_access_reaches_numbered_children():
    assert attribute_access("units.2.dw") == ".units[2].dw"
    assert attribute_access("fc") == ".fc"


def codes_of(findings) -> list[str]:
    return sorted({f.rule for f in findings})


# ------------------------------------------------------------------------------------------------ after fixes


def fix_all(speedup=0.5, interval=(0.45, 0.55), fixes=("QD004",), applied=True) -> FixAll:
    return FixAll(
        applied=applied,
        fixes=list(fixes),
        after_ms=4.0,
        float_ms=2.0,
        vs_float=Ratio(value=speedup, low=interval[0], high=interval[1], method="iqr-bounds"),
    )


def test_after_fixes_a_model_still_clearly_slower_is_reported():
    facts = slow_facts(subject_ms=1.0)  # the model as written is fast: only the fixed model is slow
    [finding] = run_after_fixes(facts, fix_all(), findings=[])
    assert finding.rule == "QD024" and "after all verified fixes (QD004)" in finding.message
    assert finding.evidence["fixes_applied"] == ["QD004"] and finding.evidence["speedup"] == "0.50x (0.45-0.55)"
    assert finding.evidence["profiled"] == "the model as written, before the fixes"


def test_after_fixes_judged_on_a_busy_machine_when_the_interval_clears():
    # measured under contention (its interval widened for it): still a verdict when it clears 1.0
    summary = fix_all()
    assert summary.vs_float is not None
    summary.vs_float = dataclasses.replace(summary.vs_float, contended=True)
    [finding] = run_after_fixes(slow_facts(subject_ms=1.0), summary, findings=[])
    assert finding.evidence["speedup"] == "0.50x (0.45-0.55, machine busy)"


@pytest.mark.parametrize(
    "change",
    [
        dict(interval=(0.45, 1.05)),  # within noise
        dict(speedup=1.5, interval=(1.4, 1.6)),  # the fixes made it faster than float
        dict(applied=False),  # the fixed model raised or nothing applied
    ],
)
def test_after_fixes_quiet_without_a_clear_slowdown(change):
    assert run_after_fixes(slow_facts(subject_ms=1.0), fix_all(**change), findings=[]) == []


def test_after_fixes_quiet_when_an_explaining_finding_was_left_out_of_the_fix():
    facts = slow_facts(engine="qnnpack")  # QD003 reports; its fix not in fix-all: it may explain the rest
    assert run_after_fixes(facts, fix_all(fixes=("QD004",)), findings=[]) == []
    # QD003's fix applied and the model still slower: the rest is unexplained
    assert codes_of(run_after_fixes(facts, fix_all(fixes=("QD003",)), findings=[])) == ["QD024"]


def test_after_fixes_not_repeated_when_qd024_already_reported_and_follows_select():
    facts = slow_facts()
    findings = run_rule("QD024", facts)
    assert run_after_fixes(facts, fix_all(), findings=findings) == []
    assert run_after_fixes(slow_facts(subject_ms=1.0), fix_all(), findings=[], ignore=["QD024"]) == []


# ------------------------------------------------------------------------------------------------ end to end


def _check_profiled(name: str):
    """run_check with a profile of several runs (0.5 s, not conftest's 0.05 s): on a loaded machine one preempted
    quantize op in a single profiled run is enough to make quantize/dequantize look like 40 % of the model (QD008)."""
    from qdoctor.gather import GatherOptions
    from qdoctor.run.check import CheckOptions, check

    options = GatherOptions(bench=True, bench_time=0.05, profile=True, profile_budget=0.5)
    return check(str(fixture_path(name)), CheckOptions(gather=options, verify=False))


@pytest.fixture(scope="module")
def measured_slower():
    """FIXTURES checked end to end, benchmarked with the fixed clock (int8 3x slower), fixed models included."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("qdoctor.gather.timing.time_models", fixed_rounds(INT8_MS, FP32_MS))
        reports = {name: _check_profiled(name) for name in FIXTURES}
        # the same with verified fixes: fix-all switches the engine to x86, and the fixed clock still says slower
        reports["verified"] = run_check(fixture_path(FIXTURES[1]), bench=True, verify=True, rounds=1)
        return reports


def test_fixture_with_no_known_cause_reports_qd024(measured_slower):
    report = measured_slower[FIXTURES[0]]
    assert report.facts.benchmark.clearly_slower()
    assert codes(report) == ["QD024"], [(c.category, round(c.share, 3)) for c in report.facts.profile.categories]
    [finding] = findings_of(report, "QD024")
    top = finding.evidence["extra_by_module"]
    # where the time goes comes from the real profiles (which modules lead is a measurement: not asserted)
    inventory = {m.path for m in report.facts.modules}
    assert top and all(row["extra_ms"] > 0 and row["module"] in inventory for row in top)
    assert finding.location.module == top[0]["module"]
    assert {"QD003", "QD004", "QD005", "QD006", "QD008"} <= set(finding.evidence["ruled_out"])
    # the fix names the int8 layers with the most extra time in this run's profiles, if any has extra time
    int8_rows = [
        r for r in extra_by_module(report.facts, top=None) if report.facts.module(r["module"]).kind == "quantized"
    ]
    if int8_rows:
        assert f"float_model{attribute_access(int8_rows[0]['module'])}.qconfig = None" in finding.fix
    else:
        assert "qconfig" not in finding.fix
    assert "--trace-dir" in finding.fix
    assert report.exit_code() == 1


def test_fixture_where_qd003_explains_the_slowdown_keeps_qd024_quiet(measured_slower):
    report = measured_slower[FIXTURES[1]]
    assert report.facts.benchmark.clearly_slower()
    assert "QD003" in codes(report) and "QD024" not in codes(report)


def test_fixture_where_qd023_explains_the_slowdown_keeps_qd024_quiet(measured_slower):
    report = measured_slower[FIXTURES[2]]
    assert report.facts.benchmark.clearly_slower()
    assert "QD023" in codes(report) and "QD024" not in codes(report)


def test_fix_all_that_leaves_the_model_slower_is_reported_after_the_fixes(measured_slower):
    report = measured_slower["verified"]
    fix_all = report.prescription.fix_all
    assert fix_all.applied and "QD003" in fix_all.fixes
    assert fix_all.vs_float.high < 1.0  # 2 ms float against 6 ms fixed int8, IQRs far apart
    [finding] = findings_of(report, "QD024")
    assert finding.message.startswith("after all verified fixes (QD003) the int8 model is still 3.00x slower")
    assert finding.evidence["fixes_applied"] == fix_all.fixes
    assert "QD003" in codes(report)  # the finding the fixes came from stays
