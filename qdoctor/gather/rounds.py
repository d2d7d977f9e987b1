"""The measurement layer: the models being compared timed in interleaved rounds, ratios from paired rounds.

Everything qdoctor compares (subject vs float baseline, each verified fix vs its "before", `qdoctor compare`'s
recipes) is measured here, together:
- the machine is looked at first (qdoctor.gather.contention): under contention the models run on the free cores
  (fewer threads, pinned) after a bounded wait for quiet, and the report says so;
- every model runs once per round, in alternating order (ABC, CBA, ...), so a change of load, frequency or cache
  state falls on all of them alike (hyperfine and pyperf time one command or worker after another; a ratio of two
  such timings mixes the model with whatever the machine did in between);
- a round's block is a few calls sized from a calibration run (pyperf calibrates loops, torch.utils.benchmark's
  blocked_autorange sizes blocks the same way) with the garbage collector off, as timeit does;
- each timing is the median and IQR over rounds (torch.utils.benchmark's Measurement; its "noisy" is IQR above
  10 % of the median), and each ratio is the ratio of the two medians;
- its interval is where a repeated check would measure it. A paired bootstrap over the rounds (the same resampled
  rounds for both models, so load common to a round cancels) gives this process's own uncertainty, but not the
  variance between processes (allocation, cache placement, frequency), which dominates on small machines: four
  checks of one CNN read 3.57x-3.74x, each printed +-3 %. pyperf answers this with fresh worker processes; qdoctor
  cannot cheaply: the models exist only in the process that ran the user's script, a spawned worker would have to
  run it again, and a forked one hangs in its first multi-threaded OpenMP region once the parent has used OpenMP's
  thread pool (GNU libgomp is not fork-safe; measured here with torch 2.14: on one thread a fork runs, 50-70 ms, but
  the user's thread count is what is measured). So the between-process component is estimated from
  repeated process-level samples (bench/calibration.py: N separate checks of several models, the spread of their
  values beyond each one's own interval) and added: the interval is a 95 % prediction interval for a second
  check's value, sqrt(2 * (own^2 + between^2)) on the log scale. Under contention the between-process part is
  larger (bigger still when others took cores a multi-threaded measurement ran on: OpenMP regions wait for
  descheduled threads), so intervals widen instead of verdicts being withheld: a verdict is stated whenever the
  whole interval clears its threshold (qdoctor.facts.Ratio), busy machine or not.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qdoctor.facts import Contention, Ratio, Timing
from qdoctor.facts.measurement import Z_95  # the normal quantile of CONFIDENCE (two-sided)
from qdoctor.gather import contention as C
from qdoctor.gather.exclusive import exclusive_measurement

NOISY_SPREAD = 0.10  # IQR / median above this is flagged, as torch.utils.benchmark does
MIN_ROUNDS = 7
MAX_ROUNDS = 40
BLOCK_S = 0.004  # a block of calls lasts at least this long (timer overhead and jitter negligible)
RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
# The standard deviation between processes of a log ratio (relative spread of the values separate checks measure,
# beyond each one's own interval): quiet; contended (measured on the free cores or one thread while others ran); and
# contended on a multi-threaded measurement (others took cores it ran on). Estimated from repeated checks with
# bench/calibration.py, which prints the value its runs need ("between-process sd seen"). On the 2-core bench machine
# (a VM: its neighbours' load is invisible to the load average) a multi-threaded fp32 model's time drifts by up to
# 1.5x over seconds, inside one process and between processes, while int8 kernels stay within a few %: four quiet
# checks of qnnpack_engine_on_x86.py gave fix-all ratios of 7.8, 6.6, 4.1 and 3.3. The sd seen, pooled over 8 ratios
# of 4 fixtures, was 0.159 (0.04 assumed: 62 % coverage), then 0.181 quiet and 0.189 under load (0.16 assumed:
# 86 of 96 pairs covered in each, 89.6 %). A contended measurement is never assumed steadier than a quiet one.
# That drift belongs to multi-threaded runs: the same fp32 CNN, the same objects in one process, timed by 12 calls of
# measure() read 1.4-3.1 ms on 2 threads (ratios 5.7x-12.3x) and 3.4-4.3 ms on 1 thread (ratios 12.8x-13.1x, sd
# 0.009): a parallel region waits for its slowest thread, and a VM's second vCPU comes and goes. Between processes it
# is bimodal: seed 004's fix-all read 15.4, 7.9, 7.8, 15.9 in four quiet checks, the qnnpack fixture's QD003 fix
# 16.0, 17.8, 9.9, 9.4. Four calibration runs on 2026-12-07 (bench/calibration.py, 4 checks of 4 fixtures each): the
# quiet multi-threaded ratios of the first three (288 pairs) were covered 87.5 % at 0.18, 91.7 % at 0.22, 95.1 % at
# 0.25, and the fourth 96 of 96 at 0.22. One thread (OMP_NUM_THREADS=1) is steadier within a process, but not
# between them: in each run one check of four read 30-60 % off the others (healthy_static.py's speedup 7.9 against
# 12.2-13.3), so a smaller one-thread sd (0.08, then 0.12) covered only 79-89 % of those pairs. One sd for every quiet
# measurement, then; no contended one is assumed steadier than a quiet one.
PROCESS_SD = 0.22
PROCESS_SD_CONTENDED = 0.22
PROCESS_SD_CONTENDED_THREADS = 0.24

Clock = Callable[[], float]

_timed_total = [0.0]  # seconds spent inside timed blocks by this process (overhead = wall / this; bench/)


def timed_seconds() -> float:
    """Seconds this process has spent inside timed blocks so far (the rest of a check is overhead)."""
    return _timed_total[0]


@dataclass
class Variant:
    """One model to time: ``run()`` is one forward pass, run under ``context()`` (its engine, ...)."""

    key: str
    run: Callable[[], Any]
    context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    threads: int | None = None  # its own thread count (a thread fix); None: the one in force


@dataclass
class RoundsResult:
    """Per variant: seconds per call in each round (paired by round index), or the exception it raised."""

    per_call: dict[str, list[float]] = field(default_factory=dict)
    number: dict[str, int] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    contention: Contention | None = None

    def timing(self, key: str) -> Timing | None:
        times = self.per_call.get(key)
        if not times or key in self.errors:
            return None
        return timing_from(times, self.number[key], self.threads[key], self.contended)

    @property
    def contended(self) -> bool:
        return self.contention is not None and self.contention.contended

    def ratio(self, numerator: str, denominator: str) -> Ratio | None:
        """median(numerator) / median(denominator) with a 95 % interval for what a repeated check would measure:
        the paired bootstrap over the shared rounds widened by the variance between processes."""
        a, b = self.per_call.get(numerator), self.per_call.get(denominator)
        if not a or not b or numerator in self.errors or denominator in self.errors:
            return None
        n = min(len(a), len(b))
        ratio = paired_ratio(a[:n], b[:n])
        if ratio is None:
            return None
        threads = max(self.threads[numerator], self.threads[denominator])
        seen = self.contention
        crowding = seen.load_average / max(seen.cores_allowed, 1) if seen is not None else 0.0
        return widened(ratio, process_sd(self.contended, threads, crowding), self.contended)


def process_sd(contended: bool, threads: int, crowding: float = 1.0) -> float:
    """The between-process standard deviation of a log ratio measured so (see PROCESS_SD): ``threads``, the most
    either side ran on. ``crowding``: runnable threads per allowed core (load average / cores) when measuring
    began; under contention the spread grows with it (each process is preempted, and its caches refilled, more
    often), as its square root: on the 2-core bench machine at a load average of 28-33 (crowding 14-17) the
    per-ratio spread of three checks was 0.05-0.5 (0.08 * 4 = 0.32 then; a fix-all ratio that jumped 60x between runs
    stays out of reach, bench/calibration.py), while growing it in proportion made every interval span orders of
    magnitude and judged nothing."""
    if not contended:
        return PROCESS_SD
    base = PROCESS_SD_CONTENDED_THREADS if threads > 1 else PROCESS_SD_CONTENDED
    return base * math.sqrt(max(1.0, crowding))


def widened(ratio: Ratio, between_sd: float, contended: bool = False) -> Ratio:
    """``ratio``'s interval (this process's own, from the paired bootstrap) turned into a 95 % prediction interval
    for the value a second check measures: on the log scale each side's half-width h becomes
    z * sqrt(2 * ((h / z)^2 + between_sd^2)) (this run's and the next run's own uncertainty, each plus the variance
    between processes)."""
    if ratio.value <= 0 or ratio.low <= 0:
        return Ratio(ratio.value, ratio.low, ratio.high, ratio.method, contended, between_sd)

    def side(half_width: float) -> float:
        own = half_width / Z_95
        return Z_95 * math.sqrt(2.0 * (own * own + between_sd * between_sd))

    return ratio.log_widened(side, f"{ratio.method}+between-process", contended, between_sd)


def timing_from(per_call_s: list[float], number: int, threads: int, contended: bool = False) -> Timing:
    times = np.asarray(per_call_s) * 1000.0
    median = float(np.median(times))
    q1, q3 = np.percentile(times, [25, 75])
    iqr = float(q3 - q1)
    return Timing(
        median_ms=median,
        iqr_ms=iqr,
        runs=len(per_call_s),
        number_per_run=number,
        num_threads=threads,
        noisy=bool(median and iqr / median > NOISY_SPREAD),
        contended=contended,
    )


def paired_ratio(a: list[float], b: list[float], resamples: int = RESAMPLES, seed: int = SEED) -> Ratio | None:
    """median(a) / median(b) and a percentile bootstrap interval, resampling rounds (pairs) with replacement."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0 or len(x) != len(y) or float(np.median(y)) <= 0:
        return None
    value = float(np.median(x) / np.median(y))
    if len(x) < 2:
        return Ratio(value, value, value, "paired-bootstrap")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(x), size=(resamples, len(x)))
    ratios = np.median(x[picks], axis=1) / np.maximum(np.median(y[picks], axis=1), 1e-15)
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Ratio(value, min(float(low), value), max(float(high), value), "paired-bootstrap")


def _block(run: Callable[[], Any], number: int, clock: Clock) -> float:
    """Seconds per call over ``number`` calls, the garbage collector off (as timeit does)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        for _ in range(number):
            run()
        spent = clock() - start
        _timed_total[0] += spent
        return spent / number
    finally:
        if enabled:
            gc.enable()


def measure(
    variants: list[Variant],
    budget_s: float,
    *,
    clock: Clock = time.perf_counter,
    threads: int | None = None,
    min_rounds: int = MIN_ROUNDS,
    max_rounds: int = MAX_ROUNDS,
    watch: bool = True,
) -> RoundsResult:
    """Time ``variants`` in interleaved rounds within about ``budget_s`` seconds per variant.

    ``threads``: the thread count the measurement is meant for (default: the one in force); contention may lower it.
    ``watch=False`` skips looking at the machine (tests with a fake clock).
    """
    import torch

    requested = threads or torch.get_num_threads()
    with exclusive_measurement():
        if not watch:
            return _rounds(variants, budget_s, clock, requested, None, min_rounds, max_rounds)
        conditions = C.plan(requested)
        with C.applied(conditions):
            watcher = C.Watch(conditions)
            result = _rounds(variants, budget_s, clock, requested, conditions, min_rounds, max_rounds)
            result.contention = watcher.stop()
        return result


@contextlib.contextmanager
def _threads(count: int) -> Any:
    """Run on ``count`` threads, set before every block even when torch.get_num_threads() already says so: that is
    the OpenMP count, and set_num_threads also sizes the pthreadpool that qnnpack and XNNPACK kernels run on. Set
    once when a measurement began (qdoctor.gather.contention.applied), with OMP_NUM_THREADS=1 checks of
    qnnpack_engine_on_x86.py still timed its int8 model on 2 threads (process CPU time 1.9x the wall time, 1.8-2.0 ms)
    in 7 of 12 and on one (3.6 ms) in the others, each report saying 1 thread; set before every block, 6 of 6 ran on
    one. The call costs 0.1 us (measured), against a block of at least BLOCK_S."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        if count != previous:
            torch.set_num_threads(previous)


def _rounds(
    variants: list[Variant],
    budget_s: float,
    clock: Clock,
    threads: int,
    conditions: C.Conditions | None,
    min_rounds: int,
    max_rounds: int,
) -> RoundsResult:
    result = RoundsResult()
    # under contention no variant runs on more threads than there are free cores (a thread fix's count included)
    cap = conditions.threads_used if conditions is not None and conditions.threads_used < threads else None
    single: dict[str, float] = {}
    for v in variants:
        count = min(v.threads or threads, cap) if cap else (v.threads or threads)
        result.threads[v.key] = count
        try:
            with v.context(), _threads(count):
                v.run()  # warm-up: lazy initialisation, weight packing
                single[v.key] = _block(v.run, 1, clock)  # sizes its blocks (a second call: the first paid setup)
        except Exception as exc:
            result.errors[v.key] = exc
    live = [v for v in variants if v.key not in result.errors]
    if not live:
        return result
    for v in live:
        result.number[v.key] = max(1, int(BLOCK_S / max(single[v.key], 1e-7)))
        result.per_call[v.key] = []
    # rounds: as many as the budget allows at one block per variant per round, within [min_rounds, max_rounds]
    per_round = sum(single[v.key] * result.number[v.key] for v in live)
    rounds = int(min(max_rounds, max(min_rounds, budget_s * len(live) / max(per_round, 1e-9))))
    # blocks longer than one call when the budget allows more than max_rounds rounds: fewer, longer blocks
    if budget_s * len(live) / max(per_round, 1e-9) > max_rounds:
        stretch = budget_s * len(live) / max(per_round, 1e-9) / max_rounds
        for v in live:
            result.number[v.key] = max(1, int(result.number[v.key] * stretch))
    index = 0
    # adaptive, as torch.utils.benchmark's adaptive_autorange: while a spread stays above NOISY_SPREAD, more rounds
    # (up to twice as many, within max_rounds); a quiet machine stops at the planned count
    while index < rounds or (index < min(2 * rounds, max_rounds) and _spread_too_wide(result, live)):
        order = live if index % 2 == 0 else list(reversed(live))
        for v in order:
            if v.key in result.errors:
                continue
            try:
                with v.context(), _threads(result.threads[v.key]):
                    result.per_call[v.key].append(_block(v.run, result.number[v.key], clock))
            except Exception as exc:
                result.errors[v.key] = exc
        index += 1
    return result


def _spread_too_wide(result: RoundsResult, live: list[Variant]) -> bool:
    for v in live:
        times = result.per_call.get(v.key)
        if v.key in result.errors or not times or len(times) < 4:
            continue
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        if median > 0 and (q3 - q1) / median > NOISY_SPREAD:
            return True
    return False


def measure_one(
    run: Callable[[], Any], budget_s: float, threads: int | None = None
) -> tuple[Timing, Contention | None]:
    """One model alone (no comparison): its Timing and the contention seen."""
    result = measure([Variant("only", run)], budget_s, threads=threads)
    if "only" in result.errors:
        raise result.errors["only"]
    timing = result.timing("only")
    assert timing is not None
    return timing, result.contention
