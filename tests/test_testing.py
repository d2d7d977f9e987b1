"""qdoctor.testing.assert_healthy (the gate, on hand-built facts and on real models) and the pytest plugin (its
fixture and --qdoctor-reports, run in a pytester session)."""

from __future__ import annotations

from pathlib import Path

import live_models as M
import pytest
from factsbuild import healthy_facts, timing

from qdoctor.errors import FloatSubjectError, OptionError
from qdoctor.facts import Benchmarks, Ratio
from qdoctor.report.model import Report
from qdoctor.testing import UnhealthyModelError, assert_healthy, unhealthy_reasons

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]


def report_of(benchmark=None, sqnr=35.0, findings=(), fail_on="warning") -> Report:
    facts = healthy_facts()
    facts.benchmark = benchmark
    facts.numerics.sqnr_db = sqnr
    return Report(facts=facts, findings=list(findings), skipped=[], fail_on=fail_on)


# ---- the gate's decisions (no model runs)


def test_speedup_fails_only_when_clearly_below():
    # float 10 ms, int8 5 ms, tight spreads: 2.0x (1.9-2.1)
    fast = Benchmarks(subject=timing(5.0, 0.1), float_baseline=timing(10.0, 0.2))
    assert unhealthy_reasons(report_of(fast), min_speedup=1.5) == []
    [reason] = unhealthy_reasons(report_of(fast), min_speedup=3.0)
    assert reason.startswith("speedup 2.00x (1.9") and "clearly below min_speedup 3.0x" in reason
    # 1.9x median but a wide interval that reaches 2.0: within noise, passes
    noisy = Benchmarks(subject=timing(5.0, 0.1), float_baseline=timing(10.0, 0.2), paired_speedup=Ratio(1.9, 1.7, 2.1))
    assert unhealthy_reasons(report_of(noisy), min_speedup=2.0) == []
    assert unhealthy_reasons(report_of(noisy), min_speedup=2.2) != []


def test_speedup_not_measured_fails_with_the_reason():
    crashed = Benchmarks(subject=None, float_baseline=timing(10.0), subject_error="the subject raised when run")
    [reason] = unhealthy_reasons(report_of(crashed), min_speedup=1.0)
    assert "not measured (the subject raised when run)" in reason


def test_sqnr_gate():
    assert unhealthy_reasons(report_of(sqnr=35.0), min_sqnr_db=30) == []
    [reason] = unhealthy_reasons(report_of(sqnr=12.5), min_sqnr_db=30)
    assert reason == "SQNR 12.5 dB vs float is below min_sqnr_db 30 dB"


def test_findings_gate_follows_fail_on():
    from factsbuild import run_rule

    finding = run_rule("QD010", _threads_facts())[0]  # 8 threads on 2 cores: a warning
    assert unhealthy_reasons(report_of(findings=[finding])) == [f"1 finding(s) at or above `warning`: {finding.rule}"]
    assert unhealthy_reasons(report_of(findings=[finding], fail_on="error")) == []


def _threads_facts():
    from factsbuild import env, make_facts

    return make_facts(environment=env(num_threads=8, cpu_count=2))


# ---- on real models


def test_assert_healthy_raises_with_the_markdown_report():
    base = M.float_model()
    with pytest.raises(AssertionError) as raised:
        assert_healthy(M.quantized(base, fuse=False), M.example_inputs(), float_model=base, bench=False, verify=False)
    error = raised.value
    assert isinstance(error, UnhealthyModelError)
    text = str(error)
    assert text.startswith("### qdoctor: the model is not healthy\n\n- 1 finding(s) at or above `warning`: QD004")
    assert "## qdoctor check: `<in-process SmallCNN>`" in text and "QD004 unfused-modules" in text
    assert text.endswith(error.report.to_markdown())


def test_assert_healthy_returns_the_report_of_a_healthy_model():
    base = M.float_model()
    report = assert_healthy(
        M.quantized(base, fuse=True), M.example_inputs(), float_model=base, min_sqnr_db=15, bench=False, verify=False
    )
    assert report.ok and report.findings == []


def test_assert_healthy_bad_input():
    base = M.float_model()
    with pytest.raises(FloatSubjectError):
        assert_healthy(base, M.example_inputs())
    with pytest.raises(OptionError, match="pass float_model="):
        assert_healthy(M.quantized(base, fuse=True), M.example_inputs(), min_speedup=1.2)
    with pytest.raises(OptionError, match="drop bench=False"):
        assert_healthy(M.quantized(base, fuse=True), M.example_inputs(), float_model=base, min_speedup=1.2, bench=False)
    with pytest.raises(OptionError, match="min_sqnr_db must be a number"):
        assert_healthy(M.quantized(base, fuse=True), M.example_inputs(), float_model=base, min_sqnr_db="20")


# ---- the pytest plugin


def test_pyproject_registers_the_plugin():
    import tomllib

    import qdoctor.pytest_plugin as plugin

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"qdoctor.pytest_plugin": "qdoctor.pytest_plugin"}
    assert callable(plugin.qdoctor_check) and callable(plugin.pytest_addoption)
    assert "py.typed" in {p.name for p in (ROOT / "qdoctor").iterdir()}


def test_report_stem():
    from qdoctor.pytest_plugin import report_stem

    assert report_stem("tests/test_m.py::test_a[x-1]", 0) == "test_m.py-test_a-x-1"
    assert report_stem("test_m.py::Test::test_b", 1) == "test_m.py-Test-test_b-2"


GATED_TESTS = """
import live_models as M


def test_unfused(qdoctor_check):
    base = M.float_model()
    qdoctor_check(M.quantized(base, fuse=False), M.example_inputs(), float_model=base, bench=False, verify=False)


def test_fused(qdoctor_check):
    base = M.float_model()
    report = qdoctor_check(M.quantized(base, fuse=True), M.example_inputs(), float_model=base, bench=False,
                           verify=False)
    assert report.ok and qdoctor_check.reports == [report]
"""


def test_plugin_fails_the_test_and_keeps_the_report(pytester):
    pytester.makepyfile(live_models=(ROOT / "tests" / "live_models.py").read_text(), test_gate=GATED_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "qdoctor.pytest_plugin", "--qdoctor-reports=kept", "-q", "-W", "ignore::DeprecationWarning"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*the model is not healthy*", "*QD004*", "*qdoctor kept this report in*"])
    kept = sorted(p.name for p in (pytester.path / "kept").iterdir())
    assert kept == ["test_gate.py-test_unfused.html", "test_gate.py-test_unfused.json", "test_gate.py-test_unfused.md"]
    markdown = (pytester.path / "kept" / "test_gate.py-test_unfused.md").read_text()
    assert markdown.startswith("### qdoctor: the model is not healthy") and "QD004" in markdown
    assert '"rule": "QD004"' in (pytester.path / "kept" / "test_gate.py-test_unfused.json").read_text()


def test_plugin_keeps_nothing_without_the_option(pytester):
    pytester.makepyfile(live_models=(ROOT / "tests" / "live_models.py").read_text(), test_gate=GATED_TESTS)
    result = pytester.runpytest_subprocess("-p", "qdoctor.pytest_plugin", "-q", "-k", "unfused")
    result.assert_outcomes(failed=1)
    assert "kept this report" not in result.stdout.str()
    assert not (pytester.path / "kept").exists()
