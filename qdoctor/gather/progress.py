"""Progress of a long phase: how many runs of a model are done, reported through the check's progress callback.

A check of a big model spends minutes in a few phases (benchmark rounds, profiled runs, per-layer numerics); the
stage message alone ("benchmarking the subject") leaves the user looking at a spinner. ``reporting(progress)``
installs the check's callback for the duration of the check; ``counted(run, stage)`` wraps a run so that every
call counts, and the callback hears ``"<stage> (<n> runs)"`` at most every UPDATE_EVERY_S seconds. Nothing is
printed here: the CLI shows the messages on stderr (qdoctor.cli), a worker forwards them to its parent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

UPDATE_EVERY_S = 0.5
RUNS_MARK = " ("  # a counted message is "<stage> (<n> runs ...)": the stage is the text before it

_reporters: list[Callable[[str], None]] = []
_stage = [""]  # the stage the check announced last: what a Counter counts runs of by default


@contextlib.contextmanager
def reporting(progress: Callable[[str], None]) -> Iterator[Callable[[str], None]]:
    """Send counted progress to ``progress`` while the block runs. Yields the callback the check must announce its
    stages through (it notes each stage, so that the runs counted next are said to be that stage's)."""

    def announce(message: str) -> None:
        _stage[0] = stage_of(message)
        progress(message)

    _reporters.append(progress)
    try:
        yield announce
    finally:
        _reporters.remove(progress)
        _stage[0] = ""


def report(message: str) -> None:
    if _reporters:
        with contextlib.suppress(Exception):  # progress never changes what a check does
            _reporters[-1](message)


class Counter:
    """Runs done in one stage; reports ``"<stage> (<n> runs)"``, throttled."""

    def __init__(self, stage: str | None = None, total: int | None = None) -> None:
        self.stage = stage  # None: the stage the check announced last, when the message is made
        self.total, self.done = total, 0
        self._last = 0.0

    def tick(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last >= UPDATE_EVERY_S or (self.total is not None and self.done >= self.total):
            self._last = now
            report(self.message())

    def message(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.stage or _stage[0] or 'running'}{RUNS_MARK}{self.done}{of} runs)"


def counted(run: Callable[[], Any], counter: Counter) -> Callable[[], Any]:
    """``run``, counting each call in ``counter``."""

    def counting() -> Any:
        result = run()
        counter.tick()
        return result

    return counting


def stage_of(message: str) -> str:
    """The stage of a progress message, without its run count."""
    return message.split(RUNS_MARK, 1)[0]
