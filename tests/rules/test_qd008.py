"""QD008 quant-overhead-dominates: unit tests on hand-built Facts, then end to end over its fixture.

Whether int8 is slower than fp32 on a given run is a measurement, and no test asserts a wall-clock speed. The end
to end test that must see QD008 reported therefore runs the whole check on the fixture with the benchmark's clock
replaced by fixed timings (int8 3x slower than fp32): loading, tracing, profiling and the rules are real. A second
run with the real clock checks that the rule follows whatever was measured.
"""

from __future__ import annotations

import pytest
from conftest import as_json, codes, findings_of, fixture_path, run_check
from factsbuild import env, make_facts, mod, profile, run_rule, timing

from qdoctor import facts as F
from qdoctor.diagnose.rules import qd008_quant_overhead_dominates as qd008_rule
from qdoctor.facts import Benchmarks, Timing

FIXTURES = ["fixtures/small_mlp_int8.py"]
INT8_MS, FP32_MS = 0.060, 0.020  # the fixed clock: int8 3x slower, IQRs far apart


def mlp_facts(subject_ms=0.36, float_ms=0.16, qdq=0.35, flt=0.0, engine="x86", observers=False, sub_iqr=0.02):
    mods = [
        mod("quant", "Quantize", F.QUANT_STUB),
        mod("fc1", "LinearReLU", F.QUANTIZED, line=12),
        mod("fc2", "Linear", F.QUANTIZED, line=14),
        mod("dequant", "DeQuantize", F.DEQUANT_STUB),
    ]
    if observers:
        mods.append(mod("fc1.activation_post_process", "HistogramObserver", F.OBSERVER))
    return make_facts(
        mods,
        [],
        environment=env(engine=engine, cpu_count=4, num_threads=4, num_interop_threads=4),
        profile=profile(
            0.3,
            [("fc1", "LinearReLU", F.QUANTIZED, 0.05), ("fc2", "Linear", F.QUANTIZED, 0.02)],
            shares={F.CAT_QDQ: qdq, F.CAT_FLOAT: flt, F.CAT_INT8: 1 - qdq - flt},
            runs=5,
        ),
        float_profile=profile(
            0.1, [("fc1", "Linear", F.FLOAT, 0.03), ("fc2", "Linear", F.FLOAT, 0.03)], shares={F.CAT_FLOAT: 1.0}, runs=5
        ),
        benchmark=Benchmarks(subject=timing(subject_ms, sub_iqr), float_baseline=timing(float_ms, 0.01)),
    )


def test_qd008_small_mlp_slower_than_fp32():
    [finding] = run_rule("QD008", mlp_facts())
    assert finding.location.module == "fc1" and finding.location.line == 12
    assert finding.evidence["slowdown"] == pytest.approx(2.25, abs=0.01)
    assert finding.evidence["layers_not_paying"] == ["fc1"]  # fc2: 0.02 int8 vs 0.03 float
    assert "float_model.fc1.qconfig = None" in finding.fix


def test_qd008_fix_for_a_build_model_target_never_assigns_to_the_function():
    """The subject comes from build_model(): a fix that rebinds the model names it quantized_model (as QD001-QD006
    do), never `build_model = ...`, which would replace the user's function."""
    facts = mlp_facts()
    facts.target.subject_name = "build_model()"
    [finding] = run_rule("QD008", facts)
    assert "build_model =" not in finding.fix and "quantized_model = " in finding.fix, finding.fix


@pytest.mark.parametrize(
    "change",
    [
        dict(subject_ms=0.15),  # int8 faster
        dict(subject_ms=0.17),  # within 5 %
        dict(sub_iqr=0.4),  # spreads overlap: noise, not evidence
        dict(flt=0.6, qdq=0.1),  # float fallback (QD005's case)
        dict(engine="qnnpack"),  # ARM kernels on x86 (QD003's case)
        dict(observers=True),  # not converted (QD006's case)
    ],
)
def test_qd008_stays_quiet_when_another_cause_or_no_evidence(change):
    assert run_rule("QD008", mlp_facts(**change)) == []


def test_qd008_is_skipped_without_a_benchmark():
    from qdoctor.diagnose.registry import run_rules

    facts = mlp_facts()
    facts.benchmark = None
    facts.unavailable["benchmark"] = "timing disabled (--no-bench)"
    _, skipped = run_rules(facts, select=["QD008"])
    assert [s.rule for s in skipped] == ["QD008"] and "benchmark" in skipped[0].reason


# ------------------------------------------------------------------------------------------------ end to end


def _fixed_clock(model, inputs, min_run_time=1.0, copy_model=True) -> Timing:
    """qdoctor.gather.timing.time_model with a fixed answer: int8 models (any torch.ao quantized module) take
    INT8_MS, float models FP32_MS."""
    int8 = any(".quantized" in type(m).__module__ for m in model.modules())
    median = INT8_MS if int8 else FP32_MS
    return Timing(median_ms=median, iqr_ms=median / 50, runs=20, number_per_run=10, num_threads=1, noisy=False)


@pytest.fixture(scope="module")
def measured_slower():
    """FIXTURES[0] checked end to end, benchmarked with the fixed clock."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("qdoctor.gather.timing.time_model", _fixed_clock)
        return run_check(fixture_path(FIXTURES[0]), bench=True)


def test_fixture_reports_qd008_when_int8_measures_slower(measured_slower):
    report = measured_slower
    assert report.facts.benchmark.subject.median_ms == INT8_MS
    assert codes(report) == ["QD008"]
    (finding,) = findings_of(report, "QD008")
    assert finding.location.module == "fc1"  # the first int8 layer (fused with relu1)
    assert finding.evidence["slowdown"] == pytest.approx(INT8_MS / FP32_MS)
    assert finding.evidence["subject_ms"] == INT8_MS and finding.evidence["float_ms"] == FP32_MS
    assert finding.evidence["int8_layers"] == 3 and finding.evidence["batch"] == 1
    assert "3.00x slower than fp32" in finding.message
    assert report.exit_code() == 1  # a warning fails the default fail level


def test_small_mlp_without_a_benchmark_skips_qd008_and_says_why(check_fixture):
    # --no-bench: QD008 needs a measurement, so it is listed as skipped with the reason, and nothing else is lost.
    report = check_fixture("fixtures/small_mlp_int8.py")
    assert report.facts.benchmark is None
    assert "QD008" not in codes(report)
    skipped = {s.rule: s.reason for s in report.skipped}
    assert skipped["QD008"] == "needs benchmark (benchmark: timing disabled (--no-bench))"
    assert skipped["QD024"].startswith("needs benchmark")  # the residual of slowness needs the measurement too
    assert {"QD012", "QD018", "QD019"} == set(skipped) - {"QD008", "QD024"}  # graph rules: an eager model has no graph
    document = as_json(report)
    assert document["benchmark"] is None and document["unavailable"]["benchmark"] == "timing disabled (--no-bench)"
    assert {"rule": "QD008", "name": "quant-overhead-dominates", "reason": skipped["QD008"]} in document["skipped"]
    assert document["findings"] == [] and report.exit_code() == 0


def test_small_mlp_qd008_follows_the_real_measurement():
    # Timings decide whether int8 was slower on this run; the test checks the rule follows the measured facts.
    report = run_check(fixture_path(FIXTURES[0]), bench=True)
    bench, measured = report.facts.benchmark, report.facts.profile
    slower = qd008_rule.clearly_slower(bench.subject, bench.float_baseline)
    overhead = measured.share(F.CAT_QDQ) + measured.share(F.CAT_OTHER) >= qd008_rule.OVERHEAD_SHARE
    small = bench.float_baseline.median_ms < qd008_rule.SMALL_MODEL_MS
    no_fallback = measured.share(F.CAT_FLOAT) <= qd008_rule.FLOAT_FALLBACK_SHARE
    qd008 = findings_of(report, "QD008")
    if slower and no_fallback and (overhead or small):
        assert [f.location.module for f in qd008] == ["fc1"]
    else:
        assert qd008 == []
