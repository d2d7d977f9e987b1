"""Verifying the fixes: each one alone (a ``Verified`` per rule code), then every applicable one together
(``FixAll``), on the counterfactuals of one check (qdoctor.prescribe.counterfactuals)."""

from __future__ import annotations

from qdoctor.facts.prescription import FixAll, Verified
from qdoctor.prescribe.counterfactuals import Counterfactuals
from qdoctor.prescribe.fixes import Fix
from qdoctor.prescribe.measure import Measured, headline, paired, rounded_db, rounded_ms, verdict


def verify_each(stage: Counterfactuals, fixes: dict[str, Fix]) -> dict[str, Verified]:
    """Each fix applied alone (on top of the fixes that make the subject run at all), timed together with its
    "before": the subject, or the model as written when the subject crashed."""
    results: dict[str, Verified] = {}
    direct = stage.direct_codes(fixes)
    rebuilt = [c for c in fixes if c not in direct] if stage.rebuild else []
    for code in fixes:
        if code not in direct and code not in rebuilt:
            results[code] = Verified.cannot_apply(stage.no_rebuild_reason)
    blocking = [c for c in rebuilt if fixes[c].repairs_crash] if stage.subject_crashed else []
    runnable = stage.fixed_recipe(stage.as_written(fixes), fixes, blocking)
    subject = stage.subject_outcome()
    plans: list[tuple[str, Measured, Measured, list[str], bool]] = []  # code, before, after, on top of, direct
    for code in rebuilt:
        stage.progress(f"verifying the fix for {code}")
        if code in blocking:
            before, after = subject, stage.rebuilt(runnable)
            on_top_of = [c for c in blocking if c != code]
        else:
            before = subject if not stage.subject_crashed else stage.rebuilt(runnable)
            after = stage.rebuilt(runnable.changed(**fixes[code].fixed))
            on_top_of = blocking
        plans.append((code, before, after, on_top_of, False))
        if stage.one_at_a_time:  # a big model: timed now with the subject and the float baseline, then freed
            stage.time_together([before, after])
    for code in direct:
        stage.progress(f"verifying the fix for {code}")
        plans.append((code, subject, stage.on_subject((code,), fixes), [], True))
        if stage.one_at_a_time:
            stage.time_together([plans[-1][2]])
    if plans and stage.options.bench:
        stage.progress("timing the fixes with the subject and the float baseline in interleaved rounds")
    # fix-all is built now and timed in the same rounds: the subject and the float baseline are timed once
    applied = [code for code, _, after, _, _ in plans if not after.cannot]
    together = [fix_all_model(stage, fixes, applied)[1]] if applied else []
    stage.time_together([m for _, before, after, _, _ in plans for m in (before, after)] + together)
    for code, before, after, on_top_of, is_direct in plans:
        results[code] = stage.subject_effect(before, after, fixes[code], stage.method(is_direct), on_top_of)
    return results


def fix_all_model(
    stage: Counterfactuals, fixes: dict[str, Fix], applied: list[str]
) -> tuple[tuple[bool, tuple[str, ...]], Measured]:
    """The model with every applied fix (built once, cached by its recipe): on a copy of the subject when every
    applied fix can go there (or nothing can be rebuilt), else rebuilt from float; and (direct, its codes)."""
    direct = stage.direct_codes({c: fixes[c] for c in applied})
    use_direct = not stage.rebuild or len(direct) == len(applied)
    codes = tuple(sorted(direct)) if use_direct else tuple(sorted(applied))
    if use_direct:
        return (use_direct, codes), stage.on_subject(codes, fixes)
    return (use_direct, codes), stage.rebuilt(stage.fixed_recipe(stage.as_written(fixes), fixes, codes))


def fix_all(
    stage: Counterfactuals, fixes: dict[str, Fix], results: dict[str, Verified]
) -> tuple[FixAll, Measured | None]:
    """Every fix that applied alone, applied together: on a copy of the subject when every one of them works there
    (or nothing can be rebuilt), else rebuilt from the float baseline; measured against the subject and the float
    baseline. Returns the summary and the fixed model's measurement (its model kept for --save-fixed)."""
    applied = [c for c in fixes if c in results and results[c].applied]
    left_out = {c: r.reason or "" for c, r in results.items() if c not in applied}
    if not applied:
        return FixAll(applied=False, reason="no fix could be applied", left_out=left_out), None
    stage.progress("verifying all fixes together")
    (use_direct, codes), after = fix_all_model(stage, fixes, applied)
    left_out = {c: r.reason or "" for c, r in results.items() if c not in codes}
    stage.time_together([after])  # already timed with the single fixes unless the applied ones differ
    before = stage.subject_outcome()
    session = after.session
    if session is not None and "subject" in session.per_call:
        before.timing = session.timing("subject")
    float_timing, vs_float = stage.vs_float(after) if after.timing else (None, None)
    if vs_float is None and float_timing is not None and after.timing is not None:
        vs_float = paired(Measured(timing=float_timing), after)
    timing = after.timing
    summary = FixAll(
        applied=after.error is None,
        fixes=list(codes),
        headline=headline(before, after, float_timing, vs_float),
        before_ms=rounded_ms(before.timing.median_ms) if before.timing else None,
        before_error=before.error,
        after_ms=rounded_ms(timing.median_ms) if timing else None,
        after_iqr_ms=rounded_ms(timing.iqr_ms) if timing else None,
        after_runs=timing.runs if timing else None,
        after_noisy=timing.noisy if timing else None,
        after_error=after.error,
        float_ms=rounded_ms(float_timing.median_ms) if float_timing else None,
        vs_float=vs_float,
        vs_float_verdict=verdict(vs_float),
        before_sqnr_db=rounded_db(before.sqnr_db),
        after_sqnr_db=rounded_db(after.sqnr_db),
        engine=after.engine,
        threads=after.threads,
        method=stage.method(use_direct),
        calibration=stage.calibration if stage.calibrated(use_direct, codes, fixes) else None,
        steps=after.steps,
        code=after.code,
        left_out=left_out,
    )
    return summary, after
