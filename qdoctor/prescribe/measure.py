"""Measuring a counterfactual: build it (with torch's state guarded), run it once, compare its output with the float
baseline's (SQNR) and time it; the verified effect of one fix, and the fix-all headline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from qdoctor.facts import Timing
from qdoctor.facts.location import exception_line
from qdoctor.gather import numerics, timing
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
    ``reference`` (the float baseline's outputs, or None) and, unless ``bench_time`` is None, time it."""
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
        if bench_time is not None:

            def run() -> None:
                with torch.no_grad():
                    model(*inputs)

            outcome.timing = timing.time_callable(run, bench_time, num_threads=threads)
    return outcome


def effect(before: Measured, after: Measured, fix: Fix, method: str, on_top_of: list[str]) -> dict[str, Any]:
    """The ``verified`` entry of a finding: what its fix did, measured (or why it could not be applied)."""
    if after.cannot:
        return {"applied": False, "reason": after.error}
    v: dict[str, Any] = {
        "applied": True,
        "before_ms": rounded_ms(before.timing.median_ms) if before.timing else None,
        "after_ms": rounded_ms(after.timing.median_ms) if after.timing else None,
        "speedup": (
            round(before.timing.median_ms / after.timing.median_ms, 3)
            if before.timing and after.timing and after.timing.median_ms > 0
            else None
        ),
        "before_sqnr_db": rounded_db(before.sqnr_db),
        "after_sqnr_db": rounded_db(after.sqnr_db),
    }
    if before.error:
        v["before_error"] = before.error
    if after.timing:
        v.update(
            after_iqr_ms=rounded_ms(after.timing.iqr_ms), after_runs=after.timing.runs, after_noisy=after.timing.noisy
        )
    v.update(engine=after.engine, threads=after.threads, method=method, steps=after.steps)
    if on_top_of:
        v["on_top_of"] = on_top_of
    v.update(fix.details)
    if after.error:
        v["after_error"] = after.error
        v["reason"] = f"the fixed copy still raises: {after.error}"
    elif after.timing is None:
        v["reason"] = f"timing disabled (--no-bench); SQNR {sqnr_text(before.sqnr_db)} -> {sqnr_text(after.sqnr_db)}"
    return v


def sqnr_text(value: float | None) -> str:
    if value is None:
        return "-"
    return "identical" if value == float("inf") else f"{value:.1f} dB"


def headline(before: Measured, after: Measured, float_timing: Timing | None) -> str:
    """e.g. "quantized: crashed -> after all fixes 4.9 ms, 6.9x faster than fp32 (34.1 ms), SQNR 35.2 dB"."""
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
        if float_timing is not None and ms > 0:
            ratio = float_timing.median_ms / ms
            speed = f"{ratio:.1f}x faster than" if ratio >= 1 else f"{1 / ratio:.1f}x SLOWER than"
            now += f", {speed} fp32 ({float_timing.median_ms:.1f} ms)"
        elif before.timing is not None and ms > 0:
            now += f" ({before.timing.median_ms / ms:.1f}x faster than before)"
    if after.sqnr_db is not None:
        now += f", SQNR {sqnr_text(after.sqnr_db)} vs fp32"
    return f"quantized: {was} -> {now}"
