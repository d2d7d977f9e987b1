"""What `qdoctor compare` found, as plain data, and the pure decisions made from it (accuracy limit, recommendation).

Nothing here runs a model: the recommendation is a function of measured numbers, so it is tested on hand-built
results.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from qdoctor.facts import Environment, Timing

SCHEMA_VERSION = 1

OK = "ok"
FAILED = "failed"  # the recipe applies to this model but raised (build, first run, timing or evaluate())
SKIPPED = "skipped"  # the recipe does not apply here (engine missing, nothing to quantize, model not eager-ready...)

FP32 = "fp32"


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
    flow: str  # fp32 | dynamic | eager | fx | pt2e
    engine: str | None  # the quantized engine it was built and run under
    title: str  # what it is, in words
    status: str = OK
    reason: str | None = None  # why it was skipped, or the error when it failed
    phase: str | None = None  # where it failed: build | run | time | evaluate
    steps: list[str] = field(default_factory=list)
    code: str = ""  # the code that produces this model from the user's float model
    build_s: float | None = None  # wall-clock seconds of one build (fuse, prepare, calibrate, convert)
    first_run_s: float | None = None  # wall-clock seconds of the first call (for pt2e: torch.compile happens here)
    latency: Timing | None = None
    speedup: float | None = None  # fp32 median / this median
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
    qdoctor_version: str = ""

    def by_speed(self) -> list[Candidate]:
        """Measured recipes fastest first, then failed, then skipped (each in run order)."""
        timed = sorted((c for c in self.candidates if c.ok and c.latency), key=_median_ms)
        untimed = [c for c in self.candidates if c.ok and not c.latency]
        failed = [c for c in self.candidates if c.status == FAILED]
        skipped = [c for c in self.candidates if c.status == SKIPPED]
        return timed + untimed + failed + skipped

    def get(self, recipe: str) -> Candidate | None:
        return next((c for c in self.candidates if c.recipe == recipe), None)


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


def recommend(candidates: list[Candidate], limits: Limits) -> Recommendation:
    """The fastest recipe whose accuracy is within the limit and which is at least ``min_speedup`` faster than fp32;
    fp32 when none is. Pure: reads only the candidates' measured numbers."""
    timed = [c for c in candidates if c.ok and c.latency is not None]
    fp32 = next((c for c in timed if c.recipe == FP32), None)
    has_metric = any(c.metric_drop is not None for c in timed)
    limit = limit_text(limits, has_metric)
    int8 = sorted((c for c in timed if c.recipe != FP32), key=_median_ms)
    accurate = [c for c in int8 if accuracy_within_limit(c, limits)]
    if fp32 is None:
        if accurate:
            fastest = accurate[0]
            return Recommendation(
                fastest.recipe, f"fastest recipe with {limit}; fp32 itself could not be measured", fastest.code
            )
        return Recommendation(None, "nothing could be measured, not even fp32")
    best: Candidate | None = accurate[0] if accurate else None
    if best is not None and best.speedup is not None and best.speedup >= limits.min_speedup:
        size = f", {best.size_ratio:.1f}x smaller" if best.size_ratio else ""
        return Recommendation(
            best.recipe,
            f"the fastest recipe with {limit}: {best.speedup:.2f}x faster than fp32{size}, {accuracy_text(best)}",
            best.code,
        )
    faster_but_inaccurate = [
        c for c in int8 if c.speedup is not None and c.speedup >= limits.min_speedup and c not in accurate
    ]
    if best is not None:
        why = (
            f"no int8 recipe with {limit} is at least {limits.min_speedup:g}x faster than fp32 "
            f"(the best, {best.recipe}, is {best.speedup:.2f}x)"
        )
    elif int8:
        why = f"no int8 recipe reaches {limit}"
    else:
        why = "no int8 recipe could be measured"
    if faster_but_inaccurate:
        why += "; faster but outside the accuracy limit: " + ", ".join(
            f"{c.recipe} ({c.speedup:.2f}x, {accuracy_text(c)})" for c in faster_but_inaccurate
        )
    return Recommendation(FP32, f"keep fp32: {why}", fp32.code)


def to_dict(result: CompareResult) -> dict[str, Any]:
    """The JSON document of a compare (schema version 1). The one place that decides its shape."""
    from qdoctor.report.model import _clean, _timing

    def candidate(c: Candidate) -> dict[str, Any]:
        d = asdict(c)
        d["latency"] = _timing(c.latency)
        return d

    return _clean(
        {
            "schema_version": SCHEMA_VERSION,
            "kind": "compare",
            "qdoctor_version": result.qdoctor_version,
            "target": {
                "spec": result.spec,
                "file": result.file,
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
            "substitutions": [asdict(sub) for sub in result.substitutions],
            "wall_s": result.wall_s,
        }
    )
