"""The measurement layer (qdoctor.gather.contention, qdoctor.gather.rounds): contention is seen and said, timings
are taken in interleaved rounds, every ratio carries an interval that a repeated check confirms, and a verdict is
stated when the interval clears its threshold (busy machine or not), withheld with its leaning when it straddles it. Behaviour only: nothing here asserts a speed (fake timers where a result must be known)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import as_json, fixture_path, run_check

from qdoctor.compare.result import FP32, Candidate, Limits, recommend
from qdoctor.facts import Benchmarks, Contention, Ratio, Timing
from qdoctor.gather import contention as C
from qdoctor.gather import rounds
from qdoctor.gather.rounds import RoundsResult, Variant

LINUX = sys.platform.startswith("linux") and os.path.exists("/proc/stat")


# ------------------------------------------------------------------------------------------------ a fake timer


class FakeTimer:
    """A clock that only moves when a fake model runs: each call of ``model(key)`` costs its next scripted time."""

    def __init__(self, costs: dict[str, list[float]]):
        self.now = 0.0
        self.costs = costs
        self.calls = dict.fromkeys(costs, 0)

    def clock(self) -> float:
        return self.now

    def model(self, key: str):
        def run() -> None:
            series = self.costs[key]
            self.now += series[self.calls[key] % len(series)]
            self.calls[key] += 1

        return run


def fake_rounds(costs: dict[str, list[float]], rounds_: int = 12) -> RoundsResult:
    timer = FakeTimer(costs)
    variants = [Variant(key, timer.model(key)) for key in costs]
    return rounds.measure(
        variants, budget_s=0.0, clock=timer.clock, watch=False, min_rounds=rounds_, max_rounds=rounds_
    )


# ------------------------------------------------------------------------------------------------ rounds, ratios


def test_intervals_are_present_and_ordered_and_follow_the_paired_rounds(monkeypatch):
    # b costs twice a in every round, while the load (common to both in a round) swings 3x between rounds
    monkeypatch.setattr(rounds, "BLOCK_S", 0.0)  # one call per block: a's and b's n-th calls share a round
    load = [1.0, 3.0, 1.2, 2.5, 1.0, 2.0, 1.1, 3.0]
    result = fake_rounds({"a": [0.001 * x for x in load], "b": [0.002 * x for x in load]})
    ratio = result.ratio("b", "a")
    assert ratio is not None and ratio.method == "paired-bootstrap+between-process"
    assert ratio.low <= ratio.value <= ratio.high
    # paired: the load swing does not blur a clear 2x; what is left is the between-process part alone
    assert ratio.clearly_above(1.0)
    assert abs(math.log(ratio.high / ratio.value) - rounds.Z_95 * math.sqrt(2) * rounds.PROCESS_SD) < 0.02
    timing = result.timing("a")
    assert timing is not None and timing.runs == 12 and timing.iqr_ms > 0 and not timing.contended


def test_a_verdict_is_withheld_when_the_interval_straddles_the_threshold():
    # the same cost, with independent noise: the interval straddles 1.0 and no comparison is stated
    a = [0.0010, 0.0013, 0.0009, 0.0012, 0.0010, 0.0011, 0.0014, 0.0009]
    b = [0.0012, 0.0009, 0.0013, 0.0010, 0.0011, 0.0010, 0.0009, 0.0014]
    result = fake_rounds({"subject": a, "float": b})
    speedup = result.ratio("float", "subject")
    assert speedup is not None and speedup.low < 1.0 < speedup.high
    bench = Benchmarks(result.timing("subject"), result.timing("float"), paired_speedup=speedup)
    assert bench.speedup_ratio is speedup
    assert not bench.clearly_slower() and speedup.within_noise(1.0)


def test_a_clear_slowdown_is_stated():
    result = fake_rounds({"subject": [0.003, 0.0031, 0.0029], "float": [0.001, 0.0011, 0.0009]})
    bench = Benchmarks(
        result.timing("subject"), result.timing("float"), paired_speedup=result.ratio("float", "subject")
    )
    assert bench.clearly_slower()


def test_under_contention_the_interval_widens_and_a_clear_verdict_is_still_stated():
    costs = {"subject": [0.003, 0.0031, 0.0029], "float": [0.001, 0.0011, 0.0009]}
    quiet = fake_rounds(costs).ratio("float", "subject")
    one_thread = fake_rounds(costs)
    one_thread.threads = {"subject": 1, "float": 1}
    one_thread.contention = _contention(contended=True)
    busy = one_thread.ratio("float", "subject")
    several = fake_rounds(costs)
    several.threads = {"subject": 2, "float": 2}
    several.contention = _contention(contended=True)
    busier = several.ratio("float", "subject")
    assert quiet is not None and busy is not None and busier is not None
    assert not quiet.contended and busy.contended and busier.contended and "machine busy" in busy.text()
    # widened with the machine's state: quiet < contended on one thread < contended on several threads
    assert busier.low < busy.low < quiet.low and quiet.high < busy.high < busier.high
    # a 3x slowdown clears 1.0 whatever the machine did: judged, not withheld
    assert busy.clearly_below(1.0) and busier.clearly_below(1.0)
    assert one_thread.timing("subject").contended


def test_a_tiny_model_measured_slower_on_a_busy_machine_gets_its_verdict():
    # issue 26: 0.43x under a same-priority torch job (quiet 0.40x) was withheld as "machine busy"
    busy = Ratio(0.43, 0.38, 0.49, "paired-bootstrap+between-process", contended=True)
    bench = Benchmarks(subject=None, float_baseline=None, paired_speedup=busy)
    assert bench.clearly_slower() and busy.clearly_below(1.0 / 1.05)


def test_a_ratio_within_noise_says_which_way_it_leans():
    from qdoctor.prescribe.measure import verdict
    from qdoctor.report.render.common import ratio_speed_text

    slower = Ratio(0.97, 0.90, 1.05, "paired-bootstrap", contended=True)
    assert slower.within_noise(1.0) and slower.leaning(1.0, "slower", "faster") == "leaning slower"
    assert verdict(slower) == "within noise, leaning slower"
    assert ratio_speed_text(slower) == "within noise of float, leaning slower: 0.97x (0.90-1.05, machine busy)"
    faster = Ratio(1.04, 0.97, 1.12)
    assert verdict(faster) == "within noise, leaning faster"
    assert verdict(Ratio(1.3, 1.1, 1.5, contended=True)) == "faster"
    assert Ratio.from_dict(slower.as_dict()) == slower


def test_widening_adds_the_between_process_variance_to_the_own_interval():
    own = Ratio(2.0, 1.9, 2.1, "paired-bootstrap")
    wide = rounds.widened(own, 0.03)
    assert wide.low < own.low < own.value < own.high < wide.high and wide.value == own.value
    # with no between-process variance it is the prediction interval of the run's own uncertainty (sqrt 2 wider)
    bare = rounds.widened(own, 0.0)
    assert abs((math.log(bare.high / 2.0)) - math.sqrt(2) * math.log(2.1 / 2.0)) < 1e-9
    assert rounds.process_sd(False, 2) <= rounds.process_sd(True, 1) < rounds.process_sd(True, 2)
    # a more crowded machine (runnable threads per core) spreads contended processes further apart
    assert rounds.process_sd(True, 1, 14.0) > rounds.process_sd(True, 1, 1.5) > rounds.process_sd(True, 1, 0.5)
    assert wide.process_sd == 0.03 and Ratio.from_dict(wide.as_dict()).as_dict() == wide.as_dict()


def test_widened_intervals_cover_other_processes_values_when_processes_differ():
    # simulated checks: each process has its own offset of the ratio (sd PROCESS_SD on the log scale) on top of
    # round-to-round noise; an interval from one process's rounds alone covers far fewer of the other processes'
    # values than the nominal 95 %, the widened one about that many (bench/calibration.py does this for real)
    rng = np.random.default_rng(1)
    values, own, widened = [], [], []
    for _ in range(40):
        offset = rng.normal(0.0, rounds.PROCESS_SD)
        load = rng.uniform(1.0, 1.5, size=15)  # common to both models in a round: cancels in pairs
        a = 0.001 * load * np.exp(rng.normal(0.0, 0.02, size=15))
        b = 0.002 * math.exp(offset) * load * np.exp(rng.normal(0.0, 0.02, size=15))
        ratio = rounds.paired_ratio(list(b), list(a), resamples=400)
        assert ratio is not None
        values.append(ratio.value)
        own.append(ratio)
        widened.append(rounds.widened(ratio, rounds.PROCESS_SD))

    def coverage(intervals: list[Ratio]) -> float:
        pairs = [(i, j) for i in range(len(values)) for j in range(len(values)) if i != j]
        return sum(intervals[i].low <= values[j] <= intervals[i].high for i, j in pairs) / len(pairs)

    assert coverage(own) < 0.8 and coverage(widened) >= 0.9


def _contention(**fields) -> Contention:
    values = dict(
        cores_allowed=2,
        load_average=3.0,
        busy_cores_before=1.0,
        busy_cores_during=0.9,
        threads_requested=2,
        threads_used=1,
        cpus_used=[0],
        action="measured on 1 thread",
    )
    values.update(fields)
    return Contention(**values)


def test_variants_run_in_alternating_order():
    order: list[str] = []
    timer = FakeTimer({"a": [0.001], "b": [0.001]})

    def recording(key: str):
        run = timer.model(key)

        def go() -> None:
            order.append(key)
            run()

        return go

    rounds.measure(
        [Variant("a", recording("a")), Variant("b", recording("b"))],
        budget_s=0.0,
        clock=timer.clock,
        watch=False,
        min_rounds=4,
        max_rounds=4,
    )
    # warm-up and calibration (2 calls each), then blocks of calls: ab, ba, ab, ba
    timed = order[4:]
    blocks = [timed[i] for i in range(0, len(timed), len(timed) // 8)]
    assert blocks == ["a", "b", "b", "a", "a", "b", "b", "a"]


# ------------------------------------------------------------------------------------------------ contention


def test_others_time_excludes_this_process_own():
    start = C.CpuSample(at=0.0, busy={0: 0, 1: 0}, own=0)
    ticks = C._TICKS
    # one second: CPU 0 fully busy (by us), CPU 1 half busy (by someone else)
    end = C.CpuSample(at=1.0, busy={0: ticks, 1: ticks // 2}, own=ticks)
    assert C.others_busy(start, end, {0, 1}) == pytest.approx(0.5, abs=0.02)
    assert C.busy_count(0.5, 2) == 1 and C.busy_count(0.2, 2) == 0 and C.busy_count(3.0, 2) == 2


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_contention_is_detected_while_a_busy_child_process_runs(monkeypatch):
    monkeypatch.setattr(C, "_memory", C._Memory(wait_left=0.0))  # no waiting for quiet in a test
    children = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in C.allowed_cpus()]
    try:
        time.sleep(0.3)
        conditions = C.plan(torch.get_num_threads())
    finally:
        for child in children:
            child.kill()
            child.wait()
    seen = conditions.contention
    assert seen.busy_cores_before >= C.BUSY_CORE
    assert "busy" in seen.action and seen.action.startswith("measured on 1 thread")
    assert conditions.threads_used == 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_measuring_restores_the_user_threads_and_affinity():
    allowed, threads = os.sched_getaffinity(0), torch.get_num_threads()
    one = {min(allowed)}
    conditions = C.Conditions(threads, 1, one, True, _contention())
    with C.applied(conditions):
        assert torch.get_num_threads() == 1 and os.sched_getaffinity(0) == one
    assert torch.get_num_threads() == threads and os.sched_getaffinity(0) == allowed


# ------------------------------------------------------------------------------------------------ end to end


def test_the_report_says_how_it_measured_and_carries_the_interval():
    report = run_check(fixture_path("small_mlp_int8.py"), bench=True)
    measurement, bench = report.facts.measurement, report.facts.benchmark
    assert measurement is not None and measurement.action.startswith("measured on ")
    assert measurement.threads_used >= 1 and measurement.cpus_used
    ratio = bench.speedup_ratio
    assert ratio is not None and ratio.method.startswith("paired-bootstrap") and ratio.low <= ratio.value <= ratio.high
    document = as_json(report)
    assert document["benchmark"]["measurement"]["action"] == measurement.action
    interval = document["benchmark"]["speedup_interval"]
    assert interval["low"] <= interval["value"] <= interval["high"]
    for key in ("subject", "float"):
        timing = document["benchmark"][key]
        assert {"median_ms", "iqr_ms", "runs", "num_threads", "contended"} <= set(timing)
    assert {"phase_load", "phase_gather", "phase_total"} <= set(document["phase_seconds"])
    from qdoctor.report.render import OutputFormat, render

    assert "measured on " in render(report, OutputFormat.terminal)  # (rich wraps long lines)
    for fmt in (OutputFormat.markdown, OutputFormat.html):
        assert measurement.action in render(report, fmt)


# ------------------------------------------------------------------------------------------------ compare


def _candidate(recipe: str, ms: float, interval: tuple[float, float, float] | None, engine: str = "x86", **fields):
    c = Candidate(recipe, recipe.split("-")[0], None if recipe == FP32 else engine, recipe, code=f"code for {recipe}")
    c.latency = Timing(median_ms=ms, iqr_ms=ms * 0.01, runs=10, number_per_run=1, num_threads=2, noisy=False)
    c.sqnr_db = 35.0
    if interval is not None:
        c.speedup_interval = Ratio(*interval, "paired-bootstrap")
        c.speedup = interval[0]
    for key, value in fields.items():
        setattr(c, key, value)
    return c


def test_compare_names_a_runner_up_within_noise():
    rec = recommend(
        [
            _candidate(FP32, 40.0, None),
            _candidate("fx-x86", 19.0, (2.1, 1.9, 2.3)),
            _candidate("eager-x86", 20.0, (2.0, 1.85, 2.2)),
        ],
        Limits(),
    )
    assert rec.recipe == "fx-x86"
    assert "eager-x86" in rec.reason and "within noise" in rec.reason


def test_compare_does_not_recommend_on_an_interval_that_does_not_clear_the_minimum_speedup():
    rec = recommend([_candidate(FP32, 40.0, None), _candidate("fx-x86", 35.0, (1.14, 0.98, 1.3))], Limits())
    assert rec.recipe == FP32 and "within noise" in rec.reason


def test_compare_recommends_on_a_busy_machine_when_the_interval_clears_and_says_the_leaning_otherwise():
    busy = _candidate("fx-x86", 20.0, (2.0, 1.6, 2.5))
    busy.speedup_interval = Ratio(2.0, 1.6, 2.5, "paired-bootstrap+between-process", contended=True)
    assert recommend([_candidate(FP32, 40.0, None), busy], Limits()).recipe == "fx-x86"
    unclear = _candidate("fx-x86", 35.0, (1.14, 0.9, 1.4))
    unclear.speedup_interval = Ratio(1.14, 0.9, 1.4, "paired-bootstrap+between-process", contended=True)
    rec = recommend([_candidate(FP32, 40.0, None), unclear], Limits())
    assert rec.recipe == FP32 and "machine busy" in rec.reason
    assert f"within noise of {Limits().min_speedup:g}x, leaning" in rec.reason


def test_compare_passes_over_a_recipe_slow_on_this_cpu_when_its_measurement_is_noisy():
    from factsbuild import env

    noisy = _candidate("fx-qnnpack", 10.0, (4.0, 3.0, 5.0), engine="qnnpack")
    noisy.latency.noisy = True
    candidates = [_candidate(FP32, 40.0, None), noisy, _candidate("fx-x86", 20.0, (2.0, 1.9, 2.1))]
    rec = recommend(candidates, Limits(), env("x86_64"))
    assert rec.recipe == "fx-x86" and "fx-qnnpack" in rec.reason and "noisy" in rec.reason
    quiet = _candidate("fx-qnnpack", 10.0, (4.0, 3.8, 4.2), engine="qnnpack")
    rec = recommend([candidates[0], quiet, candidates[2]], Limits(), env("x86_64"))
    assert rec.recipe == "fx-qnnpack"  # measured clean and clearly fastest: the measurement decides


# ------------------------------------------------------------------------------------------------ overhead


def test_profiling_does_not_import_inductor():
    # torch.profiler.profile's start asks hasattr(torch, "_inductor"), importing Inductor, Dynamo and sympy (seconds
    # of every check); qdoctor profiles through torch.autograd.profiler.profile instead
    code = (
        "import sys, torch\n"
        "from qdoctor.gather.profile import profile_model\n"
        "model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()).eval()\n"
        "found = profile_model(model, (torch.randn(2, 8),), {}, set(), runs=3)\n"
        "assert found.runs == 3 and found.modules, found\n"
        "print('torch._inductor' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_a_measurement_sets_the_thread_count_even_when_torch_reports_it_already(monkeypatch):
    # torch.get_num_threads() is the OpenMP count; only set_num_threads also sizes the pthreadpool qnnpack and XNNPACK
    # run on (one thread per core until set): skipping the call when the counts "agreed" measured a qnnpack model on
    # 2 threads under a report that said 1
    import torch

    calls: list[int] = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    now = torch.get_num_threads()
    result = rounds.measure([rounds.Variant("a", lambda: None)], 0.001, watch=False, min_rounds=2, max_rounds=2)
    assert result.threads["a"] == now and calls and set(calls) == {now}
