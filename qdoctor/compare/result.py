"""What `qdoctor compare` found, as plain data, and the pure decisions made from it (accuracy limit, recommendation).

Nothing here runs a model: the recommendation is a function of measured numbers, so it is tested on hand-built
results.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from qdoctor.facts import Contention, Environment, Ratio, Timing
from qdoctor.facts.deploy import LoweredProgram
from qdoctor.facts.location import display_path, display_traceback

SCHEMA_VERSION = 1

OK = "ok"
FAILED = "failed"  # the recipe applies to this model but raised (build, first run, timing or evaluate())
SKIPPED = "skipped"  # the recipe does not apply here (engine missing, nothing to quantize, model not eager-ready...)

FP32 = "fp32"
NOT_JUDGED = "accuracy not judged (untrained weights)"  # qdoctor.facts.weights: SQNR of a random draw judges nothing


@dataclass
class Limits:
    """When an int8 recipe is accurate enough, and when it is worth recommending over fp32."""

    max_drop: float = 1.0  # largest accepted drop of evaluate(), in points (percentage points for an accuracy)
    min_sqnr_db: float = 20.0  # smallest accepted SQNR vs fp32, used when the script has no evaluate()
    min_speedup: float = 1.1  # a recipe less than this much faster than fp32 is not worth the int8 risk


@dataclass
class Candidate:
    """One recipe applied to a copy of the float model, and what it measured."""

    recipe: str  # "fx-x86"
    flow: str  # the flow's name (qdoctor.flows), or fp32
    engine: str | None  # the quantized engine it was built and run under
    title: str  # what it is, in words
    status: str = OK
    reason: str | None = None  # why it was skipped, or the error when it failed
    phase: str | None = None  # where it failed: build | run | time | evaluate
    steps: list[str] = field(default_factory=list)
    code: str = ""  # the code that produces this model from the user's float model
    build_s: float | None = None  # wall-clock seconds of one build (fuse, prepare, calibrate, convert)
    first_run_s: float | None = None  # wall-clock seconds of the first call (for pt2e: torch.compile happens here)
    first_run_compiles: bool = False  # the flow compiles the model on its first call (PT2E: torch.compile)
    latency: Timing | None = None
    speedup: float | None = None  # fp32 median / this median
    speedup_interval: Ratio | None = None  # the same with its interval, from paired rounds (qdoctor.gather.rounds)
    size_bytes: int | None = None
    size_ratio: float | None = None  # fp32 bytes / these bytes: 4.0 means four times smaller
    sqnr_db: float | None = None  # outputs vs fp32 over the check batches
    top1_agreement: float | None = None  # share of check samples whose argmax matches fp32's (class-score outputs)
    top1_samples: int = 0
    metric: float | None = None  # evaluate(model)
    metric_drop: float | None = None  # fp32 metric - this metric, in points
    within_limit: bool | None = None  # accuracy judged by accuracy_within_limit(); None: could not be judged
    traceback: str = ""  # of a failure, for --format json and --debug

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass
class DeployedRecipe:
    """A recipe's int8 model lowered for the `--deploy` runtime and timed there against the lowered float model."""

    recipe: str  # a compare recipe ("pt2e-x86"), or the deployment target's own quantizer ("pt2e-xnnpack")
    title: str
    program: LoweredProgram | None = None  # its delegation counts, size and latency; None: it was not lowered
    reason: str | None = None  # why it was not lowered or timed, in one line
    speedup: Ratio | None = None  # lowered float program time / this program's time, from paired rounds


@dataclass
class DeployComparison:
    """`qdoctor compare --deploy NAME`: each recipe's int8 program in that runtime next to the float program."""

    target: str  # "executorch-xnnpack"
    runtime: str = ""
    float_program: LoweredProgram | None = None
    recipes: list[DeployedRecipe] = field(default_factory=list)
    unavailable: str | None = None  # why nothing was lowered (the float model did not lower)


@dataclass
class Recommendation:
    recipe: str | None  # None only when nothing, not even fp32, could be measured
    reason: str
    code: str = ""


def _median_ms(candidate: Candidate) -> float:
    """Sort key of measured candidates (unmeasured ones sort last)."""
    return candidate.latency.median_ms if candidate.latency is not None else float("inf")


@dataclass
class CompareResult:
    spec: str
    file: str | None
    float_name: str | None  # where the float model came from ("float_model", "build_float_model()", ...)
    input_shapes: list[list[int]]
    environment: Environment
    limits: Limits
    candidates: list[Candidate]
    recommendation: Recommendation
    calibration_source: str
    check_source: str  # the data SQNR and top-1 agreement were measured on
    metric_name: str | None  # "evaluate()" when the script defines it
    not_run: dict[str, str] = field(default_factory=dict)  # recipe -> why it was not selected
    notes: list[str] = field(default_factory=list)
    substitutions: list[Any] = field(default_factory=list)  # offline stand-ins the script used (qdoctor.facts)
    wall_s: float | None = None  # the whole compare, wall clock
    measurement: Contention | None = None  # how the recipes were timed: contention seen, threads, CPUs
    qdoctor_version: str = ""
    weights: Any = None  # qdoctor.facts.weights.Weights of the float model: untrained ones are not judged for accuracy
    deploy: DeployComparison | None = None  # --deploy: the recipes lowered for and timed in that runtime

    @property
    def accuracy_judged(self) -> bool:
        return self.weights is None or not self.weights.untrained

    def by_speed(self) -> list[Candidate]:
        """Measured recipes fastest first, then failed, then skipped (each in run order)."""
        timed = sorted((c for c in self.candidates if c.ok and c.latency), key=_median_ms)
        untimed = [c for c in self.candidates if c.ok and not c.latency]
        failed = [c for c in self.candidates if c.status == FAILED]
        skipped = [c for c in self.candidates if c.status == SKIPPED]
        return timed + untimed + failed + skipped

    def get(self, recipe: str) -> Candidate | None:
        return next((c for c in self.candidates if c.recipe == recipe), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of `qdoctor compare --format json`, as plain Python values."""
        return to_dict(self)


def metric_drop_points(reference: float, value: float) -> float:
    """How many points ``value`` lost against ``reference``. Scores in [0, 1] are read as fractions (0.95 = 95 %)."""
    scale = 100.0 if 0.0 <= reference <= 1.0 and 0.0 <= value <= 1.0 else 1.0
    return (reference - value) * scale


def accuracy_within_limit(candidate: Candidate, limits: Limits) -> bool | None:
    """Is the candidate accurate enough? evaluate() decides when it ran; else SQNR vs fp32; else unknown (None)."""
    if candidate.recipe == FP32:
        return True
    if candidate.metric_drop is not None:
        return candidate.metric_drop <= limits.max_drop
    if candidate.sqnr_db is not None:
        return candidate.sqnr_db >= limits.min_sqnr_db
    return None


def accuracy_text(candidate: Candidate) -> str:
    if candidate.metric_drop is not None and candidate.metric is not None:
        change = -candidate.metric_drop if abs(candidate.metric_drop) >= 0.005 else 0.0
        return f"evaluate() {candidate.metric:.4g} ({change:+.2f} points vs fp32)"
    if candidate.sqnr_db is not None:
        return "SQNR identical to fp32" if math.isinf(candidate.sqnr_db) else f"SQNR {candidate.sqnr_db:.1f} dB vs fp32"
    return "accuracy not measured"


def limit_text(limits: Limits, has_metric: bool) -> str:
    if has_metric:
        return f"evaluate() within {limits.max_drop:g} point(s) of fp32"
    return f"SQNR >= {limits.min_sqnr_db:g} dB vs fp32"


def known_slow_here(candidate: Candidate, environment: Environment | None) -> bool:
    """ARM-first kernels (QNNPACK, XNNPACK) on an x86 CPU: slow here in every measurement on a quiet machine."""
    if environment is None or not environment.is_x86:
        return False
    return candidate.engine == "qnnpack" or any(k in candidate.recipe for k in ("qnnpack", "xnnpack"))


def noisy_measurement(candidate: Candidate) -> bool:
    latency, interval = candidate.latency, candidate.speedup_interval
    return bool(latency and (latency.noisy or latency.contended)) or bool(interval and interval.contended)


def speedup_of(candidate: Candidate) -> Ratio | None:
    """The speedup over fp32 with its interval (a point when no interval was measured)."""
    if candidate.speedup_interval is not None:
        return candidate.speedup_interval
    if candidate.speedup is not None:
        return Ratio(candidate.speedup, candidate.speedup, candidate.speedup, "point")
    return None


def _interval(ratio: Ratio) -> str:
    return "" if ratio.method == "point" else f" ({ratio.low:.2f}-{ratio.high:.2f})"


def recommend(
    candidates: list[Candidate], limits: Limits, environment: Environment | None = None, accuracy_judged: bool = True
) -> Recommendation:
    """The fastest recipe whose accuracy is within the limit and whose speedup over fp32 is clearly (its interval
    above) at least ``min_speedup``; fp32 when none is. A runner-up within noise of it is named; a recipe known to be
    slow on this CPU family is passed over when its measurement was noisy. Pure: reads only measured numbers.
    ``accuracy_judged=False`` (untrained weights): by speed alone, saying accuracy was not judged."""
    timed = [c for c in candidates if c.ok and c.latency is not None]
    fp32 = next((c for c in timed if c.recipe == FP32), None)
    has_metric = any(c.metric_drop is not None for c in timed)
    limit = f"with {limit_text(limits, has_metric)}" if accuracy_judged else f"({NOT_JUDGED})"
    int8 = sorted((c for c in timed if c.recipe != FP32), key=_median_ms)
    accurate = [c for c in int8 if not accuracy_judged or accuracy_within_limit(c, limits)]
    passed_over = [c for c in accurate if known_slow_here(c, environment) and noisy_measurement(c)]
    eligible = [c for c in accurate if c not in passed_over]
    passed = (
        "; passed over "
        + ", ".join(c.recipe for c in passed_over)
        + " (known to be slow on this x86 CPU, and its measurement was noisy)"
        if passed_over
        else ""
    )
    if fp32 is None:
        if eligible:
            fastest = eligible[0]
            return Recommendation(
                fastest.recipe, f"fastest recipe {limit}; fp32 itself could not be measured{passed}", fastest.code
            )
        return Recommendation(None, "nothing could be measured, not even fp32")
    best: Candidate | None = eligible[0] if eligible else None
    best_speedup = speedup_of(best) if best is not None else None
    if best is not None and best_speedup is not None and best_speedup.clearly_above(limits.min_speedup):
        size = f", {best.size_ratio:.1f}x smaller" if best.size_ratio else ""
        reason = (
            f"the fastest recipe {limit}: {best_speedup.value:.2f}x faster than fp32{_interval(best_speedup)}"
            f"{size}, {accuracy_text(best)}"
        )
        runner = eligible[1] if len(eligible) > 1 else None
        runner_speedup = speedup_of(runner) if runner is not None else None
        if runner is not None and runner_speedup is not None and runner_speedup.high >= best_speedup.low:
            reason += (
                f"; {runner.recipe} ({runner_speedup.text()}) is within noise of it: which of the two is faster is "
                "not established by this measurement"
            )
        return Recommendation(best.recipe, reason + passed, best.code)
    faster_but_inaccurate = [
        c
        for c in int8
        if c not in accurate and (r := speedup_of(c)) is not None and r.clearly_above(limits.min_speedup)
    ]
    if best is not None and best_speedup is not None:
        noise = ""
        if best_speedup.within_noise(limits.min_speedup):
            lean = best_speedup.leaning(limits.min_speedup, "below", "above")
            noise = f" (within noise of {limits.min_speedup:g}x, {lean})"
        why = (
            f"no int8 recipe {limit} is clearly at least {limits.min_speedup:g}x faster than fp32 "
            f"(the best, {best.recipe}, is {best_speedup.text()}{noise})"
        )
    elif int8:
        why = f"no int8 recipe reaches {limit_text(limits, has_metric)}"
    else:
        why = "no int8 recipe could be measured"
    if faster_but_inaccurate:
        why += "; faster but outside the accuracy limit: " + ", ".join(
            f"{c.recipe} ({c.speedup:.2f}x, {accuracy_text(c)})" for c in faster_but_inaccurate
        )
    if not accuracy_judged and NOT_JUDGED not in why:
        why += f"; {NOT_JUDGED}"
    return Recommendation(FP32, f"keep fp32: {why}{passed}", fp32.code)


def to_dict(result: CompareResult) -> dict[str, Any]:
    """The JSON document of a compare (schema version 1). The one place that decides its shape."""
    from qdoctor.report.model import _clean, _timing

    def candidate(c: Candidate) -> dict[str, Any]:
        d = asdict(c)
        d["latency"] = _timing(c.latency)
        d["traceback"] = display_traceback(c.traceback)
        return d

    return _clean(
        {
            "schema_version": SCHEMA_VERSION,
            "kind": "compare",
            "qdoctor_version": result.qdoctor_version,
            "target": {
                "spec": display_path(result.spec),
                "file": display_path(result.file) if result.file else result.file,
                "file_absolute": os.path.abspath(result.file) if result.file else None,
                "float_model": result.float_name,
                "input_shapes": result.input_shapes,
            },
            "environment": asdict(result.environment),
            "limits": asdict(result.limits),
            "calibration_source": result.calibration_source,
            "check_source": result.check_source,
            "metric": result.metric_name,
            "recommendation": asdict(result.recommendation),
            "candidates": [candidate(c) for c in result.by_speed()],
            "not_run": result.not_run,
            "notes": result.notes,
            "measurement": asdict(result.measurement) if result.measurement is not None else None,
            "substitutions": [asdict(sub) for sub in result.substitutions],
            "weights": result.weights.as_dict() if result.weights is not None else None,
            "deploy": _deploy_dict(result.deploy) if result.deploy is not None else None,
            "wall_s": result.wall_s,
        }
    )


def _deploy_dict(deploy: DeployComparison) -> dict[str, Any]:
    from qdoctor.report.model import _timing

    def program(p: LoweredProgram | None) -> dict[str, Any] | None:
        if p is None:
            return None
        d = asdict(p)
        d["latency"] = _timing(p.latency)
        return d

    return {
        "target": deploy.target,
        "runtime": deploy.runtime,
        "float_program": program(deploy.float_program),
        "recipes": [
            {**asdict(r), "program": program(r.program), "speedup": r.speedup.as_dict() if r.speedup else None}
            for r in deploy.recipes
        ],
        "unavailable": deploy.unavailable,
    }
