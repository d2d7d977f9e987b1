"""Time several recipes' models in interleaved rounds, so that a change in machine load falls on all of them alike.

Timing one recipe after another lets a burst of other work (a shared CI runner, a colleague's job) land on one
recipe only, and a speedup is a ratio of two timings: measured on this project's shared 2-core machine, ResNet-50
fp32 timed alone swung between 77 ms and 2.1 s per call from one minute to the next. The measurement layer
(qdoctor.gather.rounds) times every model once per round, with contention watched, and derives each speedup over fp32
from paired rounds with its interval.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from qdoctor.facts import Timing
from qdoctor.gather import rounds
from qdoctor.gather.rounds import RoundsResult, Variant


@dataclass
class Contender:
    key: str
    run: Callable[[], Any]  # one forward pass
    context: Callable[[], AbstractContextManager[Any]]  # what must be in force while it runs (its engine, ...)


def time_in_turns(
    contenders: list[Contender], min_run_time: float, **options: Any
) -> tuple[dict[str, Timing | BaseException], RoundsResult]:
    """Median latency of each contender's ``run()``, timed in interleaved rounds (an exception instead for one that
    raised), and the rounds themselves (their ratios, the contention seen). ``options`` go to rounds.measure."""
    result = rounds.measure([Variant(c.key, c.run, c.context) for c in contenders], min_run_time, **options)
    timings: dict[str, Timing | BaseException] = {}
    for c in contenders:
        timing = result.timing(c.key)
        timings[c.key] = result.errors.get(c.key) or timing or RuntimeError("not timed")
    return timings, result
