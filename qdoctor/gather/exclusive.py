"""Measure with the machine to ourselves: the hook through which parallel checks take turns to time their models.

In-process (the ``check()`` API, tests) it does nothing. In a worker among several (qdoctor.run.batch), qdoctor.run.worker
installs a slot that asks the parent for the machine: the parent pauses every other worker until the measurement is
over, so parallel checks do not disturb each other's timings. Every timed or profiled run goes through
``exclusive_measurement()`` (qdoctor.gather.timing and qdoctor.gather.profile use it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

_slot: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext


def install(slot: Callable[[], AbstractContextManager[None]]) -> None:
    """Make ``slot()`` the context every measurement runs in (re-entrant: measurements may nest)."""
    global _slot
    _slot = slot


def exclusive_measurement() -> AbstractContextManager[None]:
    return _slot()
