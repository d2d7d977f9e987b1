"""QD023 slow-int8-layer: unit tests on hand-built Facts, then end to end over its fixture.

Whether an int8 layer is slower than its float twin on a given run is a measurement, and no test asserts a
wall-clock speed. The end to end test that must see QD023 therefore checks the fixture with the per-run module times
of both profiles replaced by fixed ones (int8 depthwise layers 10x their float twins); loading, tracing, the module
inventory, the alignment of int8 layers with their float twins and the rule are real. A second test with the real
profiler checks the rule's verdict on whatever was measured, when the machine is quiet enough for it to mean anything.
"""

from __future__ import annotations

import pytest
from conftest import codes, findings_of, fixture_path, run_check, skip_if_busy
from factsbuild import make_facts, mev, mod, profile, q, run_rule

from qdoctor import facts as F
from qdoctor.diagnose.rules import qd023_slow_int8_layer as qd023
from qdoctor.facts import ModuleTime

FIXTURES = ["fixtures/depthwise_conv1d_int8.py"]
DEPTHWISE = {
    "in_channels": 256,
    "out_channels": 256,
    "kernel_size": [3],
    "stride": [1],
    "padding": [1],
    "dilation": [1],
    "groups": 256,
}
POINTWISE = dict(DEPTHWISE, kernel_size=[1], padding=[0], groups=1)


def timed(path, type_, kind, runs):
    return ModuleTime(path, type_, kind, sum(runs) / len(runs), run_ms=list(runs))


def spotter_facts(dw_int8=(1.0, 1.05, 0.98, 1.02, 1.0), dw_float=(0.10, 0.11, 0.10, 0.09, 0.10), identity=0.008):
    """A Conv1d network: pointwise (fine in int8), depthwise fused with its ReLU (dw_int8 vs dw + relu float)."""
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB),
        mod("pw", "ConvReLU1d", F.QUANTIZED, line=12, params=POINTWISE),
        mod("relu0", "Identity", F.FLOAT),
        mod("dw", "ConvReLU1d", F.QUANTIZED, line=14, params=DEPTHWISE),
        mod("relu1", "Identity", F.FLOAT),
        mod("dequant", "DeQuantize", F.DEQUANT_STUB),
    ]
    float_modules = [
        mod("quant", "QuantStub", F.QUANT_STUB),
        mod("pw", "Conv1d", F.FLOAT, params=POINTWISE),
        mod("relu0", "ReLU", F.FLOAT),
        mod("dw", "Conv1d", F.FLOAT, params=DEPTHWISE),
        mod("relu1", "ReLU", F.FLOAT),
        mod("dequant", "DeQuantStub", F.DEQUANT_STUB),
    ]
    int8_profile = profile(
        1.3,
        [
            timed("dw", "ConvReLU1d", F.QUANTIZED, dw_int8),
            timed("pw", "ConvReLU1d", F.QUANTIZED, (0.10, 0.11, 0.10, 0.10, 0.12)),
            timed("relu0", "Identity", F.FLOAT, (identity,) * 5),
            timed("relu1", "Identity", F.FLOAT, (identity,) * 5),
        ],
        runs=5,
    )
    float_profile = profile(
        0.6,
        [
            timed("pw", "Conv1d", F.FLOAT, (0.30, 0.31, 0.29, 0.30, 0.30)),
            timed("dw", "Conv1d", F.FLOAT, dw_float),
            timed("relu0", "ReLU", F.FLOAT, (0.04,) * 5),
            timed("relu1", "ReLU", F.FLOAT, (0.02, 0.02, 0.03, 0.02, 0.02)),
            timed("quant", "QuantStub", F.QUANT_STUB, (0.005,) * 5),
        ],
        shares={F.CAT_FLOAT: 1.0},
        runs=5,
    )
    events = [mev("dw", "ConvReLU1d", [q((1, 256, 200))], [q((1, 256, 200))])]
    return make_facts(modules, events, profile=int8_profile, float_profile=float_profile, float_modules=float_modules)


def test_qd023_names_the_slow_depthwise_layer_with_its_shape_and_interval():
    [finding] = run_rule("QD023", spotter_facts())
    assert finding.location.module == "dw" and finding.location.line == 14
    ev = finding.evidence
    assert ev["float_twins"] == ["dw", "relu1"]  # the ReLU fused into the int8 layer counts on the float side
    assert ev["float_ms"] == pytest.approx(0.12)  # median of dw + relu1 per run
    assert ev["ratio_low"] > qd023.SLOWER and ev["ratio_low"] <= ev["ratio"] <= ev["ratio_high"]
    assert ev["runs"] == 5 and ev["input_shape"] == [1, 256, 200] and ev["params"]["groups"] == 256
    assert "depthwise, 256 channels, kernel 3, stride 1, padding 1, dilation 1, groups 256, input 1x256x200" in (
        finding.message
    )
    assert "3x3 depthwise Conv2d" in finding.message and ev["shape_change"].startswith("depthwise Conv2d 3x3")
    assert "DepthwiseConv1dAs2d(float_model.dw)" in finding.fix
    assert "float_model.dw[1].qconfig = None" in finding.fix  # the keep-float alternative


def test_qd023_without_a_known_shape_change_prescribes_float():
    facts = spotter_facts()
    facts.modules[4].params = dict(DEPTHWISE, kernel_size=[9], padding=[4])  # no fast square kernel known for 9
    [finding] = run_rule("QD023", facts)
    assert finding.evidence["shape_change"] is None and "DepthwiseConv1dAs2d" not in finding.fix
    assert "keep it in float" in finding.message


@pytest.mark.parametrize(
    "change",
    [
        dict(dw_int8=(0.11, 0.12, 0.12, 0.13, 0.11)),  # as fast as its float twin
        dict(dw_int8=(0.20, 0.21, 0.20, 0.22, 0.21)),  # slower, but less than SLOWER times
        dict(dw_int8=(0.2, 1.2, 0.25, 1.3, 0.24)),  # one layer's spread too wide for a verdict
        dict(identity=0.5),  # calls that compute nothing take half a millisecond: the profile is noise
    ],
)
def test_qd023_stays_quiet_without_a_clear_margin(change):
    assert run_rule("QD023", spotter_facts(**change)) == []


def test_qd023_widens_the_ratio_of_two_profiles_by_the_variance_between_sessions():
    # the int8 and the float profile are separate sessions: a 2.7x layer with tight per-run spreads clears 2.0 on
    # the spreads alone, but not once a busy machine's between-session variance is added (a loaded run named a layer
    # that quiet runs never did); a 10x layer clears it either way
    facts = spotter_facts(dw_int8=(0.32, 0.33, 0.32, 0.33, 0.32))
    assert [f.location.module for f in run_rule("QD023", facts)] == ["dw"]
    assert facts.profile is not None and facts.float_profile is not None
    facts.profile.between_sd = facts.float_profile.between_sd = 0.3
    assert run_rule("QD023", facts) == []
    loud = spotter_facts()
    assert loud.profile is not None
    loud.profile.between_sd = 0.3
    [finding] = run_rule("QD023", loud)
    assert finding.evidence["ratio_low"] > qd023.SLOWER


def test_qd023_stays_quiet_when_every_int8_layer_is_slow():
    """Every int8 layer several times slower than fp32 is the int8 kernels as a whole (threads fighting other
    processes for the cores, a wrong engine), not one shape missing its kernel."""
    facts = spotter_facts()
    facts.profile.modules[1].run_ms = [1.0, 1.1, 1.0, 1.05, 1.0]  # the pointwise layer too
    assert run_rule("QD023", facts) == []


def test_qd023_needs_several_runs_for_an_interval():
    facts = spotter_facts()
    for m in facts.profile.modules + facts.float_profile.modules:
        m.run_ms = m.run_ms[:2]
    assert run_rule("QD023", facts) == []


def test_float_twins_inside_a_quant_wrapper_and_after_fx_fusion():
    facts = spotter_facts()
    for m in facts.modules:  # eager QuantWrapper: the subject's layers live under "module."
        m.path = "module." + m.path if m.path else m.path
    assert qd023.float_twins(facts, "module.dw") == ["dw", "relu1"]
    facts = spotter_facts()
    facts.modules = [m for m in facts.modules if m.type != "Identity"]  # FX removes what it fused
    assert qd023.float_twins(facts, "dw") == ["dw", "relu1"]
    assert qd023.float_twins(facts, "head") == []


def test_slow_layers_is_what_other_rules_ask():
    assert [s.module for s in qd023.slow_layers(spotter_facts())] == ["dw"]
    assert qd023.explained_ms(spotter_facts()) == pytest.approx(1.0 - 0.12)
    assert qd023.explained_ms(spotter_facts(dw_int8=(0.11, 0.12, 0.12, 0.13, 0.11))) == 0.0


def test_qd023_is_skipped_without_a_float_profile():
    from qdoctor.diagnose.registry import run_rules

    facts = spotter_facts()
    facts.float_profile = None
    facts.unavailable["float_profile"] = "no float baseline in the target"
    _, skipped = run_rules(facts, select=["QD023"])
    assert [s.rule for s in skipped] == ["QD023"] and "float_profile" in skipped[0].reason


def test_per_run_times_give_a_median_and_a_spread():
    from qdoctor.gather.profile import per_run_ms, profiled_runs

    # a module called twice per forward, three forwards: calls grouped by start time, two per run
    calls = [(5.0, 1000.0), (0.0, 500.0), (1.0, 500.0), (9.0, 3000.0), (6.0, 1000.0), (10.0, 3000.0)]
    assert per_run_ms(calls, 3) == [1.0, 2.0, 6.0]
    assert per_run_ms(calls[:5], 3) == []  # calls that do not split evenly into runs: no per-run times
    timing = ModuleTime("dw", "Conv1d", F.FLOAT, 3.0, run_ms=[1.0, 2.0, 6.0]).timing()
    assert timing.median_ms == 2.0 and timing.iqr_ms == pytest.approx(2.5) and timing.runs == 3
    assert ModuleTime("dw", "Conv1d", F.FLOAT, 3.0, run_ms=[1.0, 2.0]).timing() is None
    assert profiled_runs(0.001, 1.0) == 10 and profiled_runs(0.2, 0.05) == 3  # at least 3 runs for a spread
    assert profiled_runs(2.0, 1.0) == 1  # a forward slower than a second: as many as the budget allows


def test_a_model_with_thousands_of_ops_per_call_is_profiled_fewer_times_and_per_run_times_stay_in_order():
    import torch
    from torch import nn

    from qdoctor.gather import profile as profiling

    budget = profiling.EVENT_BUDGET
    assert profiling.runs_within_event_budget(10, 100) == 10
    assert profiling.runs_within_event_budget(10, budget // 6) == 6
    assert profiling.runs_within_event_budget(10, 9_500 * 4) == 3  # never below the spread QD023 needs
    assert profiling.runs_within_event_budget(1, budget * 2) == 1  # a slow forward: as many as the time allows
    # two profiling sessions (one run, then the rest): every module still has one time per run
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    kinds = {"0": F.FLOAT, "1": F.FLOAT, "2": F.FLOAT}
    found = profiling.profile_model(model, (torch.randn(2, 8),), kinds, set(), runs=5)
    assert found.runs == 5
    linear = next(m for m in found.modules if m.path == "0")
    assert len(linear.run_ms) == 5


# ------------------------------------------------------------------------------------------------ end to end

INT8_DEPTHWISE_MS, OTHER_MS = 1.0, 0.1  # the fixed profile: int8 depthwise layers 10x everything else


@pytest.fixture(scope="module")
def fixed_profile_report():
    """FIXTURES[0] checked end to end; each module's per-run times fixed by its type (ConvReLU1d depthwise int8:
    INT8_DEPTHWISE_MS, every other module OTHER_MS, Identity nothing)."""
    from qdoctor.gather import profile as gather_profile

    real = gather_profile.profile_model

    def fixed(model, inputs, module_kinds, int8_modules, *args, **kwargs):
        measured = real(model, inputs, module_kinds, int8_modules, *args, **kwargs)
        layers = dict(model.named_modules())
        for m in measured.modules:
            layer = layers.get(m.path)
            slow = m.kind == F.QUANTIZED and getattr(layer, "groups", 1) > 1
            base = 0.001 if m.type == "Identity" else (INT8_DEPTHWISE_MS if slow else OTHER_MS)
            m.run_ms = [base * (1 + 0.01 * i) for i in range(5)]
        return measured

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gather_profile, "profile_model", fixed)
        return run_check(fixture_path(FIXTURES[0]), verify=True)


def test_fixture_reports_the_two_depthwise_layers(fixed_profile_report):
    report = fixed_profile_report
    assert "QD023" in codes(report)
    found = {f.location.module: f for f in findings_of(report, "QD023")}
    assert sorted(found) == ["depthwise1", "depthwise2"]
    one = found["depthwise1"]
    assert one.evidence["float_twins"] == ["depthwise1", "relu1"]
    assert one.evidence["input_shape"] == [1, 256, 200]
    assert "kernel 3" in one.message and "kernel 5" in found["depthwise2"].message
    assert one.location.file.endswith("depthwise_conv1d_int8.py") and one.location.line == 19
    assert report.exit_code() == 1


def test_fixture_fix_keeps_the_slow_layers_in_float_and_is_verified(fixed_profile_report):
    """The verified fix: rebuilt from the float model as the script did it (eager, fused, x86), with the two
    depthwise layers between a DeQuantStub and a QuantStub; it runs and stays close to fp32 (SQNR measured; --no-bench
    here, so no timing)."""
    for finding in findings_of(fixed_profile_report, "QD023"):
        verified = finding.verified
        assert verified.applied is True and verified.details["float_layers"] == ["depthwise1", "depthwise2"]
        assert "kept in float: depthwise1, depthwise2" in verified.steps
        assert verified.after_sqnr_db is not None and verified.after_sqnr_db > 20
    code = fixed_profile_report.prescription.fix_all.code
    assert "['depthwise1', 'depthwise2']" in code and "layer.qconfig = None" in code and "DeQuantStub()" in code


def test_fixture_verdict_follows_the_real_profile(check_fixture):
    """With the real profiler: the rule names exactly the layers whose measured interval clears the margin; on a
    quiet x86 machine those are the two depthwise Conv1d layers (20-60x slower in int8 on torch 2.14)."""
    report = check_fixture(FIXTURES[0])
    named = sorted(f.location.module for f in findings_of(report, "QD023"))
    assert named == sorted(s.module for s in qd023.slow_layers(report.facts))
    skip_if_busy()
    if report.facts.environment.is_x86 and report.facts.environment.quantized_engine in ("x86", "fbgemm"):
        assert named == ["depthwise1", "depthwise2"]


def tiny_linear_facts():
    """Issue 30, class 6: a static int8 Linear 5->5 run on one row, three times slower than in fp32 in every run, on a
    model that is clearly slower in int8 overall: the cause is its size."""
    from factsbuild import env, timing

    from qdoctor.facts import Benchmarks

    linear = {"in_features": 5, "out_features": 5}
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB),
        mod("fc", "Linear", F.QUANTIZED, line=9, params=linear),
        mod("dequant", "DeQuantize", F.DEQUANT_STUB),
    ]
    float_modules = [mod("fc", "Linear", F.FLOAT, params=linear)]
    int8_profile = profile(
        0.06, [timed("fc", "Linear", F.QUANTIZED, (0.030, 0.031, 0.029, 0.030, 0.030))], shares={F.CAT_QDQ: 0.4}, runs=5
    )
    float_profile = profile(
        0.01, [timed("fc", "Linear", F.FLOAT, (0.008, 0.008, 0.009, 0.008, 0.008))], shares={F.CAT_FLOAT: 1.0}, runs=5
    )
    events = [mev("fc", "Linear", [q((1, 5))], [q((1, 5))])]
    return make_facts(
        modules,
        events,
        environment=env(cpu_count=4, num_threads=4, num_interop_threads=4),
        profile=int8_profile,
        float_profile=float_profile,
        float_modules=float_modules,
        benchmark=Benchmarks(subject=timing(0.060, 0.001), float_baseline=timing(0.015, 0.001)),
    )


def test_a_tiny_int8_layer_slower_than_fp32_is_qd008s_size_never_qd023():
    facts = tiny_linear_facts()
    assert qd023.layer_macs(facts, "fc", facts.module("fc").params) == 25
    assert run_rule("QD023", facts) == []  # deterministically: 25 multiply-adds cannot miss a fast kernel
    [overhead] = run_rule("QD008", facts)
    assert overhead.location.module == "fc" and "too small for int8 to pay" in overhead.message


def test_the_depthwise_layer_is_not_tiny():
    facts = spotter_facts()
    assert qd023.layer_macs(facts, "dw", DEPTHWISE) == 256 * 200 * 3 > qd023.TINY_LAYER_MACS
