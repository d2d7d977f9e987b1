"""The batch runner's progress on stderr, as the command line shows it: a live status line on a terminal, plain
lines in a log or a pipe (a line per stage, and one every PLAIN_PROGRESS_EVERY_S seconds within a stage)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console

PROGRESS_PREFIX = "qdoctor progress: "  # plain progress lines, told apart from the one-line explanations
PLAIN_PROGRESS_AFTER_S = 2.0  # a stage shorter than this gets no line: a quick check (or a bad input) stays quiet
PLAIN_PROGRESS_EVERY_S = 10.0
STARTING = "starting"  # a worker's stage until it has imported qdoctor and torch (qdoctor.run.batch)  # stderr is a file or a pipe: a line per stage, and one this often within a stage


def progress_shown(
    console: Console, update: Callable[[str], None]
) -> Callable[[int, int, list[tuple[str, str]]], None]:
    """The batch runner's progress, on stderr: the live status line on a terminal; else plain lines (a log, `2>`
    to a file, CI): one for a stage once it has run PLAIN_PROGRESS_AFTER_S seconds, then one every
    PLAIN_PROGRESS_EVERY_S seconds while it runs (the runner calls this as it polls its workers)."""
    if console.is_terminal:
        return lambda *state: update(progress_text(*state))
    import time

    from qdoctor.gather.progress import stage_of

    last: dict[str, Any] = {"stage": None, "since": 0.0, "printed": None}

    def plain(done: int, total: int, running: list[tuple[str, str]]) -> None:
        if not running or all(stage == STARTING for _, stage in running):
            return  # process start-up (importing torch) tells nothing of the target, and a bad input stays one line
        text = progress_text(done, total, running)
        stage, now = stage_of(text), time.monotonic()
        if stage != last["stage"]:
            last["stage"], last["since"], last["printed"] = stage, now, None
        printed = last["printed"]
        due = (
            now - last["since"] >= PLAIN_PROGRESS_AFTER_S
            if printed is None
            else now - printed >= PLAIN_PROGRESS_EVERY_S
        )
        if due:
            last["printed"] = now
            console.print(f"{PROGRESS_PREFIX}{text}", highlight=False, markup=False, soft_wrap=True)

    return plain


def progress_text(done: int, total: int, running: list[tuple[str, str]]) -> str:
    from rich.markup import escape

    now = "; ".join(f"{spec}: {stage}" for spec, stage in running[:3]) or "finishing"
    return escape(f"{done}/{total} done; {now}" if total > 1 else now)
