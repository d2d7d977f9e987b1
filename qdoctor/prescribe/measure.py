"""Measuring a counterfactual: build it (with torch's state guarded), run it once, compare its output with the float
baseline's (SQNR) and keep it ready to time; the verified effect of one fix (a ``Verified``), and the fix-all
headline.

Counterfactuals are timed together with what they are compared with (qdoctor.prescribe.verify puts them in one
session of interleaved rounds, qdoctor.gather.rounds), so each effect is a paired ratio with its interval, and a
verdict ("the fix helps", "it is slower") is stated only when the interval clears 1.0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from qdoctor.facts import Ratio, Timing, ratio_of
from qdoctor.facts.location import exception_line
from qdoctor.facts.prescription import Applicability, Verified
from qdoctor.gather import numerics
from qdoctor.gather.rounds import RoundsResult
from qdoctor.introspect.state import preserved_torch_state, quantized_engine, quiet
from qdoctor.prescribe.fixes import Fix, SubjectFixError

Build = Callable[[], tuple[nn.Module, list[str], str]]  # -> (model, steps, code)


@dataclass
class Measured:
    """One measured model: the subject as gathered, or a counterfactual."""

    timing: Timing | None = None
    sqnr_db: float | None = None
    error: str | None = None  # building or running it raised
    cannot: bool = False  # the fix cannot be applied to this model (error says why)
    steps: list[str] = field(default_factory=list)
    code: str = ""
    engine: str = ""
    threads: int = 0
    model: nn.Module | None = None
    run: Callable[[], Any] | None = None  # one forward pass, until it is timed (qdoctor.prescribe.verify)
    session: RoundsResult | None = None  # the interleaved rounds it was timed in, under ``key``
    key: str = ""
    plan: Any = None  # the RebuildPlan it was rebuilt with from the float baseline (None: fixed on a copy)


def rounded_ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def rounded_db(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def measure(
    make: Build,
    inputs: tuple[Any, ...],
    engine: str,
    threads: int,
    *,
    reference: Any,
    bench_time: float | None,
    keep_model: bool = False,
) -> Measured:
    """Build a model with ``make`` under ``engine`` and ``threads``, run it on ``inputs``, SQNR against
    ``reference`` (the float baseline's outputs, or None) and, unless ``bench_time`` is None, keep ``run`` to time it
    (in one session with the models it is compared with: qdoctor.prescribe.verify)."""
    outcome = Measured(engine=engine, threads=threads)
    with preserved_torch_state(), quantized_engine(engine), quiet():
        torch.set_num_threads(threads)
        try:
            model, outcome.steps, outcome.code = make()
        except SubjectFixError as exc:
            outcome.error, outcome.cannot = str(exc), True
            return outcome
        except Exception as exc:
            outcome.error = f"building the fixed copy raised {exception_line(exc, 200)}"
            return outcome
        try:
            with torch.no_grad():
                output = model(*inputs)
        except Exception as exc:
            outcome.error = exception_line(exc, 200)
            return outcome
        if keep_model:
            outcome.model = model  # kept for --save-fixed; otherwise freed once measured
        if reference is not None:
            outcome.sqnr_db = numerics.sqnr_db(reference, output)
        if bench_time is not None:  # timed later, together with what it is compared with

            def run() -> None:
                with torch.no_grad():
                    model(*inputs)

            outcome.run = run
    return outcome


def paired(before: Measured, after: Measured, before_key: str | None = None) -> Ratio | None:
    """before time / after time: from the rounds both were timed in (paired bootstrap), else from the two spreads.
    ``before_key``: the key of "before" in ``after``'s session when it was timed there under another name."""
    session = after.session
    key = before_key or (before.key if before.session is not None and before.session is session else None)
    if session is not None and key and key in session.per_call:
        return session.ratio(key, after.key)
    if before.timing is not None and after.timing is not None:
        return ratio_of(before.timing, after.timing)
    return None


def verdict(ratio: Ratio | None) -> str | None:
    """ "faster" / "slower" when the interval clears 1.0 (busy machine or not), else "within noise, leaning
    slower" (or faster): the interval decides, the point only says which way it leans."""
    if ratio is None:
        return None
    if ratio.clearly_above(1.0):
        return "faster"
    if ratio.clearly_below(1.0):
        return "slower"
    return f"within noise, {ratio.leaning(1.0, 'slower', 'faster')}"


def effect(
    before: Measured,
    after: Measured,
    fix: Fix,
    method: str,
    on_top_of: list[str],
    ratio: Ratio | None = None,
    before_timing: Timing | None = None,
) -> Verified:
    """A finding's ``verified``: what its fix did, measured (or why it could not be applied).

    ``ratio`` (before / after, from paired rounds) and ``before_timing`` ("before" timed in those rounds) default to
    what the two measurements say on their own."""
    if after.cannot:
        return Verified.cannot_apply(after.error or "the fix cannot be applied to this model")
    before_t = before_timing or before.timing
    if ratio is None and after.timing is not None:
        ratio = paired(before, after)
    timing = after.timing
    verified = Verified(
        Applicability.PRESCRIBED if after.error else Applicability.VERIFIED,
        before_ms=rounded_ms(before_t.median_ms) if before_t else None,
        after_ms=rounded_ms(timing.median_ms) if timing else None,
        speedup=ratio,
        effect=verdict(ratio),
        before_sqnr_db=rounded_db(before.sqnr_db),
        after_sqnr_db=rounded_db(after.sqnr_db),
        before_error=before.error,
        after_error=after.error,
        after_iqr_ms=rounded_ms(timing.iqr_ms) if timing else None,
        after_runs=timing.runs if timing else None,
        after_noisy=timing.noisy if timing else None,
        after_contended=timing.contended if timing else None,
        timed=timing is not None,
        engine=after.engine,
        threads=after.threads,
        method=method,
        steps=after.steps,
        on_top_of=on_top_of,
        details=dict(fix.details),
    )
    if after.error:
        verified.reason = f"the fixed copy still raises: {after.error}"
    elif timing is None:
        verified.reason = (
            f"timing disabled (--no-bench); SQNR {sqnr_text(before.sqnr_db)} -> {sqnr_text(after.sqnr_db)}"
        )
    return verified


def sqnr_text(value: float | None) -> str:
    if value is None:
        return "-"
    return "identical" if value == float("inf") else f"{value:.1f} dB"


def headline(before: Measured, after: Measured, float_timing: Timing | None, vs_float: Ratio | None = None) -> str:
    """e.g. "quantized: crashed -> after all fixes 4.9 ms, 6.9x faster than fp32 (34.1 ms; 6.70-7.10x), SQNR 35.2 dB
    vs fp32".

    ``vs_float``: float time / fixed time from paired rounds (default: bounds from the two spreads); the comparison
    with fp32 is stated only when its interval clears 1.0, else it is "within noise of fp32" and which way it leans."""
    if before.timing is not None:
        was = f"{before.timing.median_ms:.1f} ms"
    elif before.error:
        was = "crashed"
    else:
        was = "not timed"
    if after.error:
        return f"quantized: {was} -> after all fixes it still raises {after.error}"
    if after.timing is None:
        now = "after all fixes (not timed: --no-bench)"
    else:
        ms = after.timing.median_ms
        now = f"after all fixes {ms:.1f} ms"
        ratio = vs_float or (ratio_of(float_timing, after.timing) if float_timing is not None else None)
        if float_timing is not None and ratio is not None:
            fp32 = f"fp32 ({float_timing.median_ms:.1f} ms; {ratio.low:.2f}-{ratio.high:.2f}x)"
            busy = " (machine busy)" if ratio.contended else ""
            if ratio.clearly_above(1.0):
                now += f", {ratio.value:.1f}x faster than {fp32}{busy}"
            elif ratio.clearly_below(1.0):
                now += f", {1 / ratio.value:.1f}x SLOWER than {fp32}{busy}"
            else:
                now += f", within noise of {fp32}{busy}, {ratio.leaning(1.0, 'slower', 'faster')}"
        elif before.timing is not None and ms > 0:
            now += f" ({before.timing.median_ms / ms:.1f}x faster than before)"
    if after.sqnr_db is not None:
        now += f", SQNR {sqnr_text(after.sqnr_db)} vs fp32"
    return f"quantized: {was} -> {now}"
