"""The typed prescription (qdoctor.facts.prescription): attributes for report, rules and the API; the JSON report's
keys from ``to_dict`` (the shape fix_all, verified, float_fallback and saved_fixed have always had)."""

from __future__ import annotations

from qdoctor.facts import Ratio
from qdoctor.facts.prescription import (
    Applicability,
    FallbackLadder,
    FallbackStep,
    FixAll,
    Prescription,
    SavedFixed,
    Verified,
)
from qdoctor.prescribe.fixes import Fix
from qdoctor.prescribe.measure import Measured, effect

RATIO = Ratio(value=2.0, low=1.8, high=2.2, method="paired-bootstrap")


def test_a_fix_that_cannot_apply_keeps_the_two_key_shape():
    verified = Verified.cannot_apply("a QAT model is fixed on a copy of itself")
    assert not verified.applied and verified.applicability is Applicability.CANNOT_APPLY
    assert verified.to_dict() == {"applied": False, "reason": "a QAT model is fixed on a copy of itself"}


def test_effect_is_verified_when_measured_and_prescribed_when_the_copy_raises():
    before = Measured(sqnr_db=10.0, engine="x86", threads=1)
    ran = effect(before, Measured(sqnr_db=30.0, engine="x86", threads=1), Fix({}, {}, details={"groups": []}), "m", [])
    assert ran.applicability is Applicability.VERIFIED and ran.after_sqnr_db == 30.0
    assert ran.reason is not None and "--no-bench" in ran.reason  # not timed: SQNR only
    assert list(ran.to_dict())[:8] == [
        "applied",
        "before_ms",
        "after_ms",
        "speedup",
        "speedup_interval",
        "effect",
        "before_sqnr_db",
        "after_sqnr_db",
    ]
    assert ran.to_dict()["groups"] == []  # the transform's own fields stay top-level keys
    raised = effect(before, Measured(error="RuntimeError: boom"), Fix({}, {}), "m", [])
    assert raised.applicability is Applicability.PRESCRIBED and raised.applied
    assert raised.to_dict()["after_error"] == "RuntimeError: boom"
    cannot = effect(before, Measured(error="no stubs here", cannot=True), Fix({}, {}), "m", [])
    assert cannot.to_dict() == {"applied": False, "reason": "no stubs here"}


def test_fix_all_reads_by_attribute_and_writes_the_json_keys():
    summary = FixAll(
        applied=True, fixes=["QD004"], after_ms=2.0, float_ms=4.0, vs_float=RATIO, vs_float_verdict="faster"
    )
    d = summary.to_dict()
    assert d["speedup_vs_float"] == 2.0 and d["speedup_vs_float_interval"]["low"] == 1.8 and d["vs_float"] == "faster"
    assert list(d)[-1] == "left_out" and summary.measured
    nothing = FixAll(applied=False, reason="no fix could be applied", left_out={"QD003": "engine is global"})
    assert nothing.to_dict() == {
        "applied": False,
        "reason": "no fix could be applied",
        "fixes": [],
        "left_out": {"QD003": "engine is global"},
    }


def test_the_ladder_and_the_saved_model_have_one_home():
    ladder = FallbackLadder(steps=[FallbackStep(["fc2"], sqnr_db=31.0, code="x = 1", ms=1.0)], target="SQNR", chosen=0)
    prescription = Prescription(fix_all=None, fallback=ladder, saved=SavedFixed("fixed.pt", reason="nothing"))
    d = prescription.to_dict()
    assert set(d) == {"float_fallback", "saved_fixed"}
    assert d["float_fallback"]["steps"][0] == {
        "float_layers": ["fc2"],
        "sqnr_db": 31.0,
        "error": None,
        "code": "x = 1",
        "ms": 1.0,
        "iqr_ms": None,
    }
    assert d["saved_fixed"] == {"path": "fixed.pt", "saved": False, "reason": "nothing"}
    assert FallbackLadder(reason="a QAT model").to_dict() == {"steps": [], "reason": "a QAT model"}
