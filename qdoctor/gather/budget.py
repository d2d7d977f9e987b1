"""Measurement budgets scaled to the model's per-call time.

A small model is timed in many short rounds (qdoctor.gather.rounds: at least MIN_ROUNDS, more while the spread is
wide). At one or two seconds per call, the same rule costs minutes per comparison: a big model gets fewer rounds,
each one call per model, and no adaptive doubling beyond ``max_rounds``. The interval stays honest: it is the paired
bootstrap over the rounds actually run, so fewer rounds give a wider interval, and a verdict only when it still clears
its threshold.
"""

from __future__ import annotations

from qdoctor.gather import rounds

SLOW_CALL_S = 0.25  # from this per-call time on, a comparison is budgeted by wall time, not by round count
SLOW_MIN_ROUNDS = 5  # rounds a slow comparison still gets (a median, quartiles and a paired interval)
SLOW_BUDGET_S = 40.0  # wall time one comparison of slow models may take, about (all its models together)


def rounds_for(per_call_s: float | None, models: int) -> tuple[int, int]:
    """(min_rounds, max_rounds) for comparing ``models`` models whose slowest call takes ``per_call_s`` seconds
    (None: unknown, the defaults)."""
    if per_call_s is None or per_call_s < SLOW_CALL_S:
        return rounds.MIN_ROUNDS, rounds.MAX_ROUNDS
    fitting = int(SLOW_BUDGET_S / (per_call_s * max(models, 1)))
    most = max(SLOW_MIN_ROUNDS, min(rounds.MIN_ROUNDS * 2, fitting))
    return min(SLOW_MIN_ROUNDS, most), most
