"""The prescription, typed: what each verified fix did (``Verified``), the fixes applied together (``FixAll``), the
speed/accuracy table of keeping layers in float (``FallbackLadder``), the saved fixed model (``SavedFixed``), all in
one ``Prescription`` on the report.

Plain data with no torch, so that diagnose/ (the after-fixes checks) and report/ read attributes, never dict keys.
qdoctor.prescribe fills them; ``to_dict()`` gives the JSON report's shape (the keys it has always had).

A fix's ``Applicability`` says how far qdoctor got with it, as Ruff's Fix carries its applicability:
VERIFIED (applied to a copy and measured), PRESCRIBED (applied to a copy, but the fixed copy could not be measured:
it raised) or CANNOT_APPLY (``reason`` says why).

The closed loop (issue 25) composes treatment rounds from these types: a round is the findings it treated, one
``FixAll`` (its fixes, steps and code; the speed against float as a ``Ratio`` with its interval, the SQNR before and
after) and what it leaves (``FixAll.left_out`` plus the after-fixes findings); the rounds go in ``Prescription``
beside ``fix_all``, which is then the last round's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from qdoctor.facts.measurement import Ratio


class Applicability(str, Enum):
    VERIFIED = "verified"  # applied to a copy and measured
    PRESCRIBED = "prescribed"  # applied to a copy, which could not be measured (it raised): the code stands
    CANNOT_APPLY = "cannot-apply"  # qdoctor cannot apply it to this model: ``reason`` says why


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Verified:
    """One fix's effect, measured on a copy against its "before" (the subject, or the model as written)."""

    applicability: Applicability
    reason: str | None = None  # why it cannot apply, or what is missing from the numbers
    before_ms: float | None = None
    after_ms: float | None = None
    speedup: Ratio | None = None  # before time / after time, with its interval (paired rounds when possible)
    effect: str | None = None  # "faster" / "slower" / "within noise" / "machine busy": the interval decides
    before_sqnr_db: float | None = None
    after_sqnr_db: float | None = None
    before_error: str | None = None  # the "before" raised (the subject crashed)
    after_error: str | None = None  # the fixed copy raised
    after_iqr_ms: float | None = None
    after_runs: int | None = None
    after_noisy: bool | None = None
    after_contended: bool | None = None
    timed: bool = False  # the fixed copy was timed (else --no-bench, or it raised)
    engine: str = ""
    threads: int = 0
    method: str = ""  # how it was verified: on a copy of the subject, or rebuilt from the float baseline
    steps: list[str] = field(default_factory=list)
    on_top_of: list[str] = field(default_factory=list)  # fixes applied first, without which the copy cannot run
    details: dict[str, Any] = field(default_factory=dict)  # the transform's own fields (groups, float_layers...)

    @property
    def applied(self) -> bool:
        return self.applicability is not Applicability.CANNOT_APPLY

    @classmethod
    def cannot_apply(cls, reason: str) -> Verified:
        return cls(Applicability.CANNOT_APPLY, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        if not self.applied:
            return {"applied": False, "reason": self.reason}
        d: dict[str, Any] = {
            "applied": True,
            "before_ms": self.before_ms,
            "after_ms": self.after_ms,
            "speedup": _rounded(self.speedup.value, 3) if self.speedup is not None else None,
            "speedup_interval": self.speedup.as_dict() if self.speedup is not None else None,
            "effect": self.effect,
            "before_sqnr_db": self.before_sqnr_db,
            "after_sqnr_db": self.after_sqnr_db,
        }
        if self.before_error:
            d["before_error"] = self.before_error
        if self.timed:
            d.update(
                after_iqr_ms=self.after_iqr_ms,
                after_runs=self.after_runs,
                after_noisy=self.after_noisy,
                after_contended=self.after_contended,
            )
        d.update(engine=self.engine, threads=self.threads, method=self.method, steps=self.steps)
        if self.on_top_of:
            d["on_top_of"] = self.on_top_of
        d.update(self.details)
        if self.after_error:
            d["after_error"] = self.after_error
        if self.reason:
            d["reason"] = self.reason
        return d


@dataclass
class FixAll:
    """Every applicable fix applied together, measured against the subject and the float baseline."""

    applied: bool  # the fixed model was built and ran
    fixes: list[str] = field(default_factory=list)  # the rule codes applied, in order
    reason: str | None = None  # why nothing was applied
    headline: str = ""  # "quantized: 9.1 ms -> after all fixes 4.9 ms, 6.9x faster than fp32 (...)"
    before_ms: float | None = None
    before_error: str | None = None
    after_ms: float | None = None
    after_iqr_ms: float | None = None
    after_runs: int | None = None
    after_noisy: bool | None = None
    after_error: str | None = None
    float_ms: float | None = None
    vs_float: Ratio | None = None  # float time / fixed time, with its interval: above 1.0 is faster than float
    vs_float_verdict: str | None = None  # "faster" / "slower" / "within noise" / "machine busy"
    before_sqnr_db: float | None = None
    after_sqnr_db: float | None = None
    engine: str = ""
    threads: int = 0
    method: str = ""
    calibration: str | None = None  # qdoctor's calibration batches went in: where they came from
    steps: list[str] = field(default_factory=list)
    code: str = ""  # the code of the fixed recipe
    left_out: dict[str, str] = field(default_factory=dict)  # rule code -> why its fix is not in fix-all

    @property
    def measured(self) -> bool:
        return self.after_ms is not None

    def to_dict(self) -> dict[str, Any]:
        if not self.applied and not self.fixes:
            return {"applied": False, "reason": self.reason, "fixes": [], "left_out": self.left_out}
        d: dict[str, Any] = {
            "applied": self.applied,
            "fixes": self.fixes,
            "headline": self.headline,
            "before_ms": self.before_ms,
            "before_error": self.before_error,
            "after_ms": self.after_ms,
            "after_iqr_ms": self.after_iqr_ms,
            "after_runs": self.after_runs,
            "after_noisy": self.after_noisy,
            "float_ms": self.float_ms,
            "speedup_vs_float": _rounded(self.vs_float.value, 3) if self.vs_float is not None else None,
            "speedup_vs_float_interval": self.vs_float.as_dict() if self.vs_float is not None else None,
            "vs_float": self.vs_float_verdict,
            "before_sqnr_db": self.before_sqnr_db,
            "after_sqnr_db": self.after_sqnr_db,
            "engine": self.engine,
            "threads": self.threads,
            "method": self.method,
            "calibration": self.calibration,
            "steps": self.steps,
            "code": self.code,
        }
        if self.after_error:
            d["after_error"] = self.after_error
        d["left_out"] = self.left_out
        return d


@dataclass
class FallbackStep:
    """One row of the speed/accuracy table: the worst ``float_layers`` kept in float."""

    float_layers: list[str]
    sqnr_db: float | None = None
    error: str | None = None  # building, running or evaluating it raised
    metric: float | None = None  # evaluate() of the model, when the script has one
    drop_points: float | None = None  # the float model's metric minus this one, in points
    code: str | None = None  # the code of the chosen step
    ms: float | None = None
    iqr_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"float_layers": self.float_layers, "sqnr_db": self.sqnr_db, "error": self.error}
        if self.metric is not None:
            d["metric"] = self.metric
        if self.drop_points is not None:
            d["drop_points"] = self.drop_points
        if self.code is not None:
            d["code"] = self.code
        d.update(ms=self.ms, iqr_ms=self.iqr_ms)
        return d


@dataclass
class FallbackLadder:
    """The speed/accuracy table: keep the worst 1, 2, 3... layers in float until the accuracy target is met."""

    steps: list[FallbackStep] = field(default_factory=list)
    reason: str | None = None  # why there is no table (the model cannot be rebuilt)
    target: str = ""  # "SQNR >= 20 dB", or evaluate() within N points of the float model
    before_sqnr_db: float | None = None
    before_ms: float | None = None
    float_ms: float | None = None
    chosen: int | None = None  # the index of the first step that meets the target

    def to_dict(self) -> dict[str, Any]:
        if self.reason is not None:
            return {"steps": [s.to_dict() for s in self.steps], "reason": self.reason}
        return {
            "target": self.target,
            "before_sqnr_db": self.before_sqnr_db,
            "before_ms": self.before_ms,
            "float_ms": self.float_ms,
            "steps": [s.to_dict() for s in self.steps],
            "chosen": self.chosen,
        }


@dataclass
class SavedFixed:
    """--save-fixed: where the fix-all model went and how to load it, or why it was not saved."""

    path: str
    saved: bool = False
    reason: str | None = None  # why nothing was saved
    format: str | None = None  # "torchscript" or "state_dict"
    how: str | None = None
    load: str | None = None  # how to load it back
    error: str | None = None  # writing it raised

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "saved": self.saved}
        for key in ("reason", "format", "how", "load", "error"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        return d


@dataclass
class TreatedFinding:
    """A finding as a treatment round lists it: its rule, severity, where, and what it said."""

    rule: str
    name: str
    severity: str
    module: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity,
            "module": self.module,
            "message": self.message,
        }


@dataclass
class TreatmentRound:
    """One round of the closed loop (qdoctor.run.treatment): the model it examined (round 1: the script's subject;
    round N: the model round N-1's fixes made), the findings on it, its fix-all (measured against the same float
    baseline) and why the loop stopped after it, when it did."""

    number: int
    examined: str  # "`qmodel` as written", "the model after round 1's fixes"
    findings: list[TreatedFinding] = field(default_factory=list)
    fix_all: FixAll | None = None
    sqnr_db: float | None = None  # the examined model's output SQNR against float
    vs_float: Ratio | None = None  # float time / the examined model's time (paired), above 1.0 is faster
    vs_float_verdict: str | None = None
    stopped: str | None = None  # why no further round ran (the last round says it)

    @property
    def new_codes(self) -> list[str]:
        return sorted({f.rule for f in self.findings})

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.number,
            "examined": self.examined,
            "findings": [f.to_dict() for f in self.findings],
            "sqnr_db": self.sqnr_db,
            "speedup_vs_float": _rounded(self.vs_float.value, 3) if self.vs_float is not None else None,
            "speedup_vs_float_interval": self.vs_float.as_dict() if self.vs_float is not None else None,
            "vs_float": self.vs_float_verdict,
            "fix_all": self.fix_all.to_dict() if self.fix_all is not None else None,
            "stopped": self.stopped,
        }


@dataclass
class Treatment:
    """The closed loop: rounds of diagnose -> fix -> measure, each on the model the previous round's fixes made.
    ``final_code`` is the composed recipe of every round's fixes (the last applied round's fix-all code)."""

    rounds: list[TreatmentRound] = field(default_factory=list)
    budget: int = 1
    final_code: str = ""
    remains: list[str] = field(default_factory=list)  # what the last round leaves, in words

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "rounds": [r.to_dict() for r in self.rounds],
            "final_code": self.final_code,
            "remains": self.remains,
        }


@dataclass
class Prescription:
    """What the prescription stage hands the report (``Report.prescription``): fix-all, the speed/accuracy table and
    the saved model. The closed loop's treatment rounds (issue 25) belong here too, as a list beside ``fix_all``
    (see the module's docstring for how a round composes from these types)."""

    fix_all: FixAll | None = None
    fallback: FallbackLadder | None = None
    saved: SavedFixed | None = None
    treatment: Treatment | None = None  # the rounds after the first (qdoctor.run.treatment), when any ran

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's "fix_all", "float_fallback", "saved_fixed" and "treatment" entries (those present)."""
        d: dict[str, Any] = {}
        if self.treatment is not None:
            d["treatment"] = self.treatment.to_dict()
        if self.fix_all is not None:
            d["fix_all"] = self.fix_all.to_dict()
        if self.fallback is not None:
            d["float_fallback"] = self.fallback.to_dict()
        if self.saved is not None:
            d["saved_fixed"] = self.saved.to_dict()
        return d
