"""The closed loop: treat, examine the treated model again, treat again.

A check finds the causes, applies every fix to a copy ("fix all") and measures it. When that fixed model is still
clearly slower than the float baseline, or its output SQNR is still below the floor, the causes that remain are often
of another kind, and only the fixed model's own facts show them (a qnnpack engine on x86 hides a depthwise kernel off
the x86 fast path: every int8 layer is slow until the engine is right). So the fixed model becomes the subject of the
next round: its facts are gathered (profile, per-layer numerics, a paired benchmark against the same float baseline;
what depends on the float baseline alone is reused), the rules run on it, its fixes are verified, and so on until
nothing that explains a slowdown or a sub-floor SQNR remains, a round makes no progress, or the budget of rounds is
spent. Each round's fix-all is rebuilt from the float baseline with the recipe read from the model it examined, so
the last round's code is the composed recipe of every round.

This module is the loop only: the runner (qdoctor.run.check) hands it the stages as callables, so that it imports
none of the runner.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qdoctor.facts import SQNR_FLOOR_DB, Facts, Ratio
from qdoctor.facts.prescription import FixAll, Prescription, TreatedFinding, Treatment, TreatmentRound

if TYPE_CHECKING:
    from qdoctor.diagnose.findings import Finding
    from qdoctor.load.target import LoadedTarget
    from qdoctor.report.model import Report

DEFAULT_ROUNDS = 3

# the stages of one round, as the runner provides them
Gather = Callable[["LoadedTarget", Facts], Facts]  # facts of a loaded target, reusing the earlier facts' float parts
Diagnose = Callable[[Facts], "Report"]  # the rules over the facts
# the prescription and the fix-all measurement, its model kept; the last argument is the plan that built the subject
Verify = Callable[["LoadedTarget", Facts, "list[Finding]", Any], "tuple[Prescription | None, Any]"]
AfterFixes = Callable[["Report"], "list[Finding]"]  # the after-fixes checks (QD024 on what fix-all leaves): added
Progress = Callable[[str], None]


def still_ill(fix_all: FixAll | None, accuracy_judged: bool = True) -> str | None:
    """Why the model that ``fix_all`` made needs another round, in words; None when it does not (or nothing was
    fixed, or the fixed model raised: there is no model to examine)."""
    if fix_all is None or not fix_all.applied or fix_all.after_error:
        return None
    ratio = fix_all.vs_float
    if ratio is not None and ratio.clearly_below(1.0):
        return f"after the fixes it is still slower than fp32: {ratio.text()} the speed of fp32"
    sqnr = fix_all.after_sqnr_db
    if accuracy_judged and sqnr is not None and sqnr < SQNR_FLOOR_DB:
        return f"after the fixes its output SQNR is {sqnr:.1f} dB, below the {SQNR_FLOOR_DB:g} dB floor"
    return None


def treated(findings: list[Finding]) -> list[TreatedFinding]:
    return [
        TreatedFinding(f.rule, f.name, f.severity.value, f.location.module, f.message)
        for f in sorted(findings, key=lambda f: f.sort_key())
    ]


def _round_of(number: int, examined: str, report: Report, prescription: Prescription | None) -> TreatmentRound:
    facts = report.facts
    bench = facts.benchmark
    ratio = bench.paired_speedup if bench is not None else None
    return TreatmentRound(
        number=number,
        examined=examined,
        findings=treated(report.findings),
        fix_all=prescription.fix_all if prescription is not None else None,
        sqnr_db=round(facts.numerics.sqnr_db, 1) if facts.numerics and facts.numerics.sqnr_db is not None else None,
        vs_float=ratio,
        vs_float_verdict=_verdict(ratio),
    )


def _verdict(ratio: Ratio | None) -> str | None:
    if ratio is None:
        return None
    if ratio.clearly_below(1.0):
        return "slower"
    if ratio.clearly_above(1.0):
        return "faster"
    return f"within noise, {ratio.leaning(1.0, 'slower', 'faster')}"


def _examining(loaded: LoadedTarget, fixed: Any, number: int) -> LoadedTarget:
    """The next round's target: the model the previous round's fixes made, with the same float baseline, inputs,
    calibration and evaluation as the script's, under the engine and threads the fixes used."""
    target = copy.copy(loaded.target)  # the same names: the fix code of every round speaks the script's names
    target.selection = [
        *loaded.target.selection,
        f"treatment round {number}: the model round {number - 1}'s fixes made",
    ]
    return dataclasses.replace(
        loaded,
        target=target,
        subject=fixed.model,
        user_engine=fixed.engine or loaded.user_engine,
        user_num_threads=fixed.threads or loaded.user_num_threads,
    )


def _key(finding: Finding) -> tuple[str, str]:
    return finding.rule, finding.location.module or ""


def treat(
    loaded: LoadedTarget,
    report: Report,
    fixed: Any,
    after_fixes_found: list[Finding],
    budget: int,
    stages: tuple[Gather, Diagnose, Verify, AfterFixes],
    progress: Progress = lambda _: None,
    accuracy_judged: bool = True,
) -> Treatment:
    """Rounds 2..``budget`` after the check of ``report`` (round 1, already prescribed; ``fixed`` is its fix-all
    measurement with the model kept; ``after_fixes_found`` the findings its after-fixes checks added). Adds to ``report`` the findings of later rounds that round 1 did not have,
    replaces its after-fixes findings with the last round's (QD024 speaks from the last round's own profile), and
    returns the treatment plan; ``report.prescription.treatment`` is set when a second round ran."""
    gather, diagnose, verify, after_fixes = stages
    prescription = report.prescription
    first = _round_of(1, f"`{loaded.target.subject_name}` as the script left it", report, prescription)
    first.findings = treated([f for f in report.findings if all(f is not a for a in after_fixes_found)])
    treatment = Treatment(rounds=[first], budget=budget)
    seen = {_key(f) for f in report.findings}
    current_facts = report.facts
    why = still_ill(prescription.fix_all if prescription else None, accuracy_judged)
    number = 1
    while True:
        last = treatment.rounds[-1]
        if why is None:
            last.stopped = _healthy_or_untreatable(last)
            break
        if number >= budget:
            last.stopped = f"{why}; the budget of {budget} round(s) is spent (--rounds)"
            break
        if fixed is None or getattr(fixed, "model", None) is None:
            last.stopped = f"{why}; the fixed model could not be kept for another round"
            break
        number += 1
        progress(f"treatment round {number}: examining the model round {number - 1}'s fixes made")
        next_loaded = _examining(loaded, fixed, number)
        plan = fixed.plan
        fixed = None  # the previous round's model lives on only as the next round's subject
        facts = gather(next_loaded, current_facts)
        round_report = diagnose(facts)
        new = [f for f in round_report.findings if _key(f) not in seen]
        round_prescription, fixed = verify(next_loaded, facts, round_report.findings, plan)
        round_report.prescription = round_prescription
        round_after = after_fixes(round_report)
        this = _round_of(number, f"the model after round {number - 1}'s fixes", round_report, round_prescription)
        treatment.rounds.append(this)
        _merge_findings(report, after_fixes_found, new, round_after, number)
        after_fixes_found = round_after
        seen |= {_key(f) for f in round_report.findings}
        current_facts = facts
        next_why = still_ill(round_prescription.fix_all if round_prescription else None, accuracy_judged)
        progressed = bool(new) and round_prescription is not None and _applied(round_prescription.fix_all)
        if next_why is not None and not progressed:
            this.stopped = (
                f"{next_why}; this round found no new cause with a fix that applies: no progress, so the loop stops"
            )
            break
        why = next_why
    final = next((r.fix_all for r in reversed(treatment.rounds) if _applied(r.fix_all)), None)
    treatment.final_code = final.code if final is not None else ""
    treatment.remains = _remains(treatment)
    if len(treatment.rounds) > 1 and prescription is not None:
        prescription.treatment = treatment
    return treatment


def _applied(fix_all: FixAll | None) -> bool:
    return fix_all is not None and fix_all.applied and bool(fix_all.fixes)


def _healthy_or_untreatable(last: TreatmentRound) -> str:
    fix_all = last.fix_all
    if fix_all is None or not fix_all.fixes:
        if last.number == 1:
            return "no finding with a fix that applies: nothing to treat"
        ratio = last.vs_float
        if ratio is not None and ratio.clearly_below(1.0):
            return (
                f"the model examined in round {last.number} is still slower than fp32 ({ratio.text()}) and no cause "
                "with a fix that applies was found on it; QD024 says where its time goes"
            )
        if last.sqnr_db is not None and last.sqnr_db < SQNR_FLOOR_DB:
            return (
                f"the model examined in round {last.number} is still below the {SQNR_FLOOR_DB:g} dB SQNR floor "
                f"({last.sqnr_db:.1f} dB) and no cause with a fix that applies was found on it"
            )
        return f"round {last.number} found nothing that explains a slowdown or a sub-floor SQNR: the model is healthy"
    if not fix_all.applied or fix_all.after_error:
        return f"the fixed model could not be measured ({fix_all.after_error or fix_all.reason or 'it raised'})"
    return "after the fixes nothing explains a slowdown or a sub-floor SQNR: the model is healthy"


def _remains(treatment: Treatment) -> list[str]:
    last = treatment.rounds[-1]
    if last.stopped and "healthy" in last.stopped:
        return []
    if last.fix_all is not None and last.fix_all.left_out:
        return [f"{code}: {reason}" for code, reason in last.fix_all.left_out.items()]
    return [last.stopped] if last.stopped else []


def _merge_findings(
    report: Report, stale: list[Finding], new: list[Finding], after: list[Finding], number: int
) -> None:
    """The later round's new findings join the report, marked with the round that found them; the earlier round's
    after-fixes findings (``stale``: QD024 read from a profile the fixes made obsolete) give way to this round's
    (``after``)."""
    kept = [f for f in report.findings if all(f is not s for s in stale)]
    for finding in new:
        finding.evidence.setdefault("treatment_round", number)
        finding.evidence.setdefault("found_on", f"the model after round {number - 1}'s fixes")
    later = [f for f in after if all(f is not n for n in new)]
    for finding in later:
        finding.evidence.setdefault("treatment_round", number)
    report.findings = sorted(kept + new + later, key=lambda f: f.sort_key())
