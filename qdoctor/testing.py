"""Guard a quantized model with a test: ``assert_healthy`` fails with qdoctor's Markdown report as the message.

    from qdoctor.testing import assert_healthy

    def test_int8_model_is_healthy():
        assert_healthy(quantized_model, example_inputs, float_model=float_model, min_speedup=1.5)

With pytest, the ``qdoctor_check`` fixture (qdoctor.pytest_plugin) does the same and can keep the reports of failing
checks as files (``--qdoctor-reports=DIR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qdoctor.errors import OptionError
from qdoctor.report.model import Report

if TYPE_CHECKING:
    from torch import nn


class UnhealthyModelError(AssertionError):
    """The model failed ``assert_healthy``. ``str(error)`` is the Markdown report, headed by the reasons;
    ``report`` is the Report and ``reasons`` the one-line reasons."""

    def __init__(self, report: Report, reasons: list[str]) -> None:
        self.report, self.reasons = report, reasons
        super().__init__(failure_message(report, reasons))


def failure_message(report: Report, reasons: list[str]) -> str:
    """The Markdown report, headed by why the model is not healthy."""
    head = ["### qdoctor: the model is not healthy", "", *[f"- {reason}" for reason in reasons], ""]
    from qdoctor.report.render import OutputFormat, render

    return "\n".join(head) + "\n" + render(report, OutputFormat.markdown)


def _threshold(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise OptionError(f"{name} must be a number, not {value!r}")
    return float(value)


def unhealthy_reasons(report: Report, min_speedup: float | None = None, min_sqnr_db: float | None = None) -> list[str]:
    """Why ``report`` fails the gate: findings at or above its ``fail_on``, a speedup clearly below ``min_speedup``
    (its whole interval below: a difference within the timing noise passes), an SQNR below ``min_sqnr_db``."""
    reasons = []
    failing = report.failing()
    if failing:
        codes = ", ".join(dict.fromkeys(f.rule for f in failing))
        reasons.append(f"{len(failing)} finding(s) at or above `{report.fail_on}`: {codes}")
    facts = report.facts
    if min_speedup is not None:
        bench = facts.benchmark
        ratio = bench.speedup_ratio if bench is not None else None
        if ratio is None:
            why = (bench.subject_error if bench is not None else None) or facts.unavailable.get("benchmark")
            reasons.append(f"speedup not measured ({why or 'no timing of both models'}); min_speedup is {min_speedup}")
        elif ratio.clearly_below(min_speedup):
            reasons.append(f"speedup {ratio.text()} vs float is clearly below min_speedup {min_speedup}x")
    if min_sqnr_db is not None:
        numerics = facts.numerics
        sqnr = numerics.sqnr_db if numerics is not None else None
        if sqnr is None:
            why = facts.unavailable.get("numerics", "no output to compare")
            reasons.append(f"SQNR not measured ({why}); min_sqnr_db is {min_sqnr_db}")
        elif sqnr < min_sqnr_db:
            reasons.append(f"SQNR {sqnr:.1f} dB vs float is below min_sqnr_db {min_sqnr_db} dB")
    return reasons


def assert_healthy(
    model: nn.Module,
    example_inputs: Any,
    *,
    float_model: nn.Module | None = None,
    fail_on: str = "warning",
    min_speedup: float | None = None,
    min_sqnr_db: float | None = None,
    select: str | Sequence[str] | None = None,
    ignore: str | Sequence[str] | None = None,
    bench: bool = True,
    bench_time: float = 1.0,
    verify: bool = True,
    calibration_data: Any = None,
    evaluate: Any = None,
) -> Report:
    """Check ``model`` (qdoctor.check_model: in this process, your objects unchanged) and raise UnhealthyModelError,
    an AssertionError whose message is the Markdown report, when it has findings at or above ``fail_on``, when its
    speedup over ``float_model`` is clearly below ``min_speedup`` (the whole confidence interval below it, so timing
    noise alone does not fail a test), or when its SQNR against ``float_model`` is below ``min_sqnr_db``.
    Returns the Report when the model is healthy.

    ``min_speedup`` and ``min_sqnr_db`` need ``float_model``; ``min_speedup`` also needs ``bench=True``.
    Bad input raises the TargetError subclasses of qdoctor.check_model, not AssertionError.
    """
    from qdoctor.api import check_model

    speedup = _threshold(min_speedup, "min_speedup")
    sqnr = _threshold(min_sqnr_db, "min_sqnr_db")
    if (speedup is not None or sqnr is not None) and float_model is None:
        raise OptionError("min_speedup and min_sqnr_db compare against the float model: pass float_model=")
    if speedup is not None and not bench:
        raise OptionError("min_speedup needs timings: drop bench=False")
    report = check_model(
        model,
        example_inputs,
        float_model=float_model,
        calibration_data=calibration_data,
        evaluate=evaluate,
        bench=bench,
        bench_time=bench_time,
        verify=verify,
        select=select,
        ignore=ignore,
        fail_on=fail_on,
    )
    reasons = unhealthy_reasons(report, speedup, sqnr)
    if reasons:
        raise UnhealthyModelError(report, reasons)
    return report


__all__ = ["UnhealthyModelError", "assert_healthy", "failure_message", "unhealthy_reasons"]
