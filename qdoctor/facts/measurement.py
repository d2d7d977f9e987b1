"""Measurement facts: timings (median and spread), ratios with their intervals, the contention seen while
measuring, and the benchmark of subject and float baseline (qdoctor.gather.rounds fills them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Z_95 = 1.959964  # the two-sided normal quantile of a 95 % interval


@dataclass
class Timing:
    """A torch.utils.benchmark measurement: median and spread, never a mean of wall-clock deltas."""

    median_ms: float
    iqr_ms: float
    runs: int  # number of timed blocks behind the median
    number_per_run: int  # calls per block
    num_threads: int
    noisy: bool  # IQR / median > 10 %
    contended: bool = False  # other processes ran on the cores it was measured on (qdoctor.gather.contention)

    @property
    def spread(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms else 0.0


@dataclass(frozen=True)
class Ratio:
    """A ratio of two timings with its 95 % interval: `4.1x (3.9-4.3)`.

    The interval is where a repeated check on this machine would measure the ratio (qdoctor.gather.rounds: the
    paired rounds' own uncertainty widened by the variance between processes, more of it under contention). A
    verdict that depends on a comparison ("slower", "no gain", "the fix helps") is stated when the whole interval
    clears the threshold, busy machine or not; when the interval straddles it, the difference is within noise, and
    ``leaning`` says which side the measured value is on.
    """

    value: float
    low: float
    high: float
    method: str = "iqr-bounds"  # how the interval was derived ("paired-bootstrap", "iqr-bounds", "point")
    # Measured while other processes took time on the measured cores: its interval is widened for it (and says so),
    # but a verdict is still stated when the interval clears the threshold.
    contended: bool = False
    # the standard deviation between processes (log scale) added to the interval (qdoctor.gather.rounds.widened)
    process_sd: float = 0.0

    def clearly_below(self, threshold: float) -> bool:
        return self.high < threshold

    def clearly_above(self, threshold: float) -> bool:
        return self.low > threshold

    def within_noise(self, threshold: float) -> bool:
        """The interval straddles ``threshold``: no verdict (``leaning`` says which way the value points)."""
        return not self.clearly_below(threshold) and not self.clearly_above(threshold)

    def leaning(self, threshold: float, below: str, above: str) -> str:
        """Which way a ratio within noise of ``threshold`` leans, in the caller's words: "leaning slower"."""
        if self.value < threshold:
            return f"leaning {below}"
        if self.value > threshold:
            return f"leaning {above}"
        return "even"

    def log_widened(self, side: Callable[[float], float], method: str, contended: bool, between_sd: float) -> Ratio:
        """This ratio with each side's half-width h on the log scale replaced by ``side(h)`` (the value stays)."""
        center = math.log(self.value)
        low = math.exp(center - side(center - math.log(self.low)))
        high = math.exp(center + side(math.log(self.high) - center))
        return Ratio(self.value, low, high, method, contended, between_sd)

    def across_sessions(self, between_sd: float) -> Ratio:
        """This ratio of two times measured in separate sessions (two profiles), its interval widened by the variance
        between sessions: on the log scale each side's half-width h becomes sqrt(h^2 + (z * between_sd)^2)."""
        if between_sd <= 0 or self.value <= 0 or self.low <= 0:
            return self
        extra = (Z_95 * between_sd) ** 2
        return self.log_widened(
            lambda h: math.sqrt(h * h + extra), f"{self.method}+between-session", self.contended, between_sd
        )

    def text(self) -> str:
        busy = ", machine busy" if self.contended else ""
        return f"{self.value:.2f}x ({self.low:.2f}-{self.high:.2f}{busy})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": round(self.value, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
            "method": self.method,
            "contended": self.contended,
            "process_sd": round(self.process_sd, 4),
        }

    @classmethod
    def from_dict(cls, interval: dict[str, Any]) -> Ratio:
        """The inverse of ``as_dict`` (a ratio kept in a report's extras, e.g. fix-all's)."""
        return cls(
            value=interval["value"],
            low=interval["low"],
            high=interval["high"],
            method=interval.get("method", "iqr-bounds"),
            contended=bool(interval.get("contended", False)),
            process_sd=float(interval.get("process_sd", 0.0)),
        )


def ratio_of(numerator: Timing, denominator: Timing) -> Ratio | None:
    """numerator / denominator with conservative bounds from the two spreads (quartiles), when nothing better exists."""
    if numerator.median_ms <= 0 or denominator.median_ms <= 0:
        return None
    low_den = max(denominator.median_ms + denominator.iqr_ms / 2, 1e-12)
    high_den = max(denominator.median_ms - denominator.iqr_ms / 2, 1e-12)
    return Ratio(
        value=numerator.median_ms / denominator.median_ms,
        low=max(numerator.median_ms - numerator.iqr_ms / 2, 0.0) / low_den,
        high=(numerator.median_ms + numerator.iqr_ms / 2) / high_den,
    )


@dataclass
class Contention:
    """What else the machine did while qdoctor measured, and what qdoctor did about it (qdoctor.gather.contention).

    ``busy_cores_*`` count other processes' CPU time in cores (this process's own time subtracted): 1.0 is one core
    kept fully busy by someone else.
    """

    cores_allowed: int  # CPUs this process may run on (os.sched_getaffinity)
    load_average: float  # 1-minute load average when measuring began
    busy_cores_before: float  # other processes, over all allowed CPUs, just before measuring
    busy_cores_during: float  # other processes, on the CPUs measured on, while measuring
    threads_requested: int  # the thread count in force (the user's)
    threads_used: int
    cpus_used: list[int]  # the CPUs measured on (all allowed ones unless qdoctor moved to the free ones)
    waited_s: float = 0.0  # waited for the machine to quieten down
    contended: bool = False  # other processes ran on the measured CPUs while measuring (intervals widened for it)
    action: str = ""  # what was done, in words: "measured on 1 thread: 1 of 2 cores was busy"

    def text(self) -> str:
        return self.action


# int8 counts as slower than float when it takes at least this much longer, beyond noise (Benchmarks.clearly_slower)
SLOWDOWN = 1.05


@dataclass
class Benchmarks:
    subject: Timing | None
    float_baseline: Timing | None
    subject_error: str | None = None  # why the subject could not be timed (it crashed, ...)
    # float time / subject time from paired rounds, when the measurement layer measured them together
    paired_speedup: Ratio | None = None

    @property
    def speedup_ratio(self) -> Ratio | None:
        """The speedup with its interval: paired rounds when measured so, else bounds from the two spreads."""
        if self.paired_speedup is not None:
            return self.paired_speedup
        if self.subject and self.float_baseline:
            return ratio_of(self.float_baseline, self.subject)
        return None

    def clearly_slower(self) -> bool:
        """The quantized model is slower than its float baseline by SLOWDOWN beyond noise: the whole interval of the
        speedup lies below 1 / SLOWDOWN, busy machine or not. One threshold for every rule that explains a slowdown
        (QD008) and for the residual one (QD024): with two, an interval ending between them (0.50x (0.19-0.97) on a
        busy machine) made QD024 call a slowdown "unexplained" that QD008 explains at 0.95."""
        ratio = self.speedup_ratio
        return ratio is not None and ratio.clearly_below(1.0 / SLOWDOWN)

    def evidence(self) -> dict[str, float]:
        """{"subject_ms", "float_ms"} (rounded medians) when both were timed, for a finding's evidence."""
        if self.subject and self.float_baseline:
            return {"subject_ms": round(self.subject.median_ms, 3), "float_ms": round(self.float_baseline.median_ms, 3)}
        return {}

    @property
    def speedup(self) -> float | None:
        """float time / subject time: > 1 means the quantized model is faster."""
        if self.subject and self.float_baseline and self.subject.median_ms > 0:
            return self.float_baseline.median_ms / self.subject.median_ms
        return None
