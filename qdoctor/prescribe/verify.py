"""Verified prescriptions: apply each finding's fix to a copy, measure it like the subject, and "fix all".

A finding whose rule has a transform (qdoctor.prescribe.fixes) gets ``finding.verified`` (a ``Verified``): the model
rebuilt from a copy of the float baseline the way the script evidently meant to (its flow, engine and qconfig family,
its defects), then with the one fix, and compared with the float baseline by SQNR. The counterfactuals, the subject
and the float baseline are then timed together in interleaved rounds (qdoctor.gather.rounds), so each fix's effect
is a paired ratio with its interval, judged only when the interval clears 1.0. "Fix all" applies every applicable
fix together and is measured against the float baseline. The user's objects are never touched (every model here is
a deep copy) and torch's global state is restored after each counterfactual.

Cheap by design: each distinct counterfactual is built once (cached by its plan), all of them are timed in one
session for a short budget each, and calibration uses a few batches.

The jobs live in their own modules: the counterfactuals (``counterfactuals.py``), each fix and fix-all
(``fix_all.py``), the speed/accuracy table (``ladder.py``), measuring (``measure.py``), saving (``save.py``).
"""

from __future__ import annotations

import dataclasses

from qdoctor.diagnose.findings import Finding
from qdoctor.facts import Facts
from qdoctor.facts.location import exception_line
from qdoctor.facts.prescription import FallbackLadder, FixAll, Prescription, SavedFixed, Verified
from qdoctor.introspect.state import preserved_torch_state, quiet
from qdoctor.load.target import LoadedTarget
from qdoctor.prescribe.counterfactuals import VERIFY_BENCH_TIME, Counterfactuals, PrescribeOptions, Progress
from qdoctor.prescribe.fix_all import fix_all, verify_each
from qdoctor.prescribe.fixes import CannotApply, Fix, Transform, all_transforms
from qdoctor.prescribe.ladder import fallback_ladder
from qdoctor.prescribe.measure import Measured
from qdoctor.prescribe.save import save_fixed

__all__ = ["VERIFY_BENCH_TIME", "PrescribeOptions", "prescribe", "prescribe_keeping"]


def prescribe(
    loaded: LoadedTarget,
    facts: Facts,
    findings: list[Finding],
    options: PrescribeOptions | None = None,
    progress: Progress = lambda _: None,
) -> Prescription | None:
    """Fill ``verified`` on every finding whose rule has a transform; return the prescription (fix-all, the
    speed/accuracy table, the saved model), None when no finding has a transform and nothing was to be saved.
    Never modifies the user's objects; restores torch's global state."""
    return prescribe_keeping(loaded, facts, findings, options, progress)[0]


def prescribe_keeping(
    loaded: LoadedTarget,
    facts: Facts,
    findings: list[Finding],
    options: PrescribeOptions | None = None,
    progress: Progress = lambda _: None,
) -> tuple[Prescription | None, Measured | None]:
    """prescribe(), and the fix-all model's measurement (its ``model`` kept with ``options.keep_fixed``): the next
    treatment round (qdoctor.run.treatment) examines that model."""
    options = options or PrescribeOptions()
    transforms = {t.code: t for t in all_transforms()}
    relevant = [f for f in findings if f.rule in transforms]
    if not relevant:
        if not options.save_fixed:
            return None, None
        return Prescription(
            saved=SavedFixed(options.save_fixed, reason="no finding has an automatic fix: nothing to save")
        ), None
    prescription = Prescription()
    with preserved_torch_state(), quiet():
        progress("preparing verified fixes")
        fixed: Measured | None
        try:
            prescription.fix_all, prescription.fallback, fixed = _verify(
                loaded, facts, relevant, transforms, options, progress
            )
        except Exception as exc:
            reason = f"verification failed: {exception_line(exc, 200)} (a qdoctor bug: please report it)"
            for finding in relevant:
                finding.verified = Verified.cannot_apply(reason)
            prescription.fix_all, fixed = FixAll(applied=False, reason=reason), None
        if options.save_fixed:
            if fixed is not None and fixed.model is not None:
                progress(f"saving the fixed model to {options.save_fixed}")
                prescription.saved = save_fixed(
                    fixed.model, fixed.engine, loaded.inputs, options.save_fixed, fixed.code
                )
            else:
                summary = prescription.fix_all
                prescription.saved = SavedFixed(
                    options.save_fixed, reason=summary.after_error or summary.reason or "no fixed model"
                )
    return prescription, fixed


def _verify(
    loaded: LoadedTarget,
    facts: Facts,
    relevant: list[Finding],
    transforms: dict[str, Transform],
    options: PrescribeOptions,
    progress: Progress,
) -> tuple[FixAll, FallbackLadder | None, Measured | None]:
    stage = Counterfactuals(loaded, facts, options, progress)
    outcomes: dict[str, Fix | CannotApply] = {}
    firsts: dict[str, Finding] = {}
    for code in sorted({f.rule for f in relevant}):
        firsts[code] = next(f for f in relevant if f.rule == code)
        outcomes[code] = transforms[code].make(stage.ctx, firsts[code])
    fixes = {c: o for c, o in outcomes.items() if isinstance(o, Fix)}
    results = {c: Verified.cannot_apply(o.reason) for c, o in outcomes.items() if isinstance(o, CannotApply)}
    results.update(verify_each(stage, fixes))
    fallback = None
    for code, finding in firsts.items():  # the first finding whose transform offers a speed/accuracy table
        ladder = transforms[code].ladder
        order = ladder(stage.ctx, finding) if ladder is not None else None
        if order:
            fallback = fallback_ladder(stage, order, fixes)
            break
    for finding in relevant:
        finding.verified = dataclasses.replace(results[finding.rule])  # one per finding
    summary, fixed = fix_all(stage, fixes, results)
    return summary, fallback, fixed
