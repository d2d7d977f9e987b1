"""The batch runner's progress on stderr, as the command line shows it: a live status line on a terminal, plain
lines in a log or a pipe (a line per stage, and one every PLAIN_PROGRESS_EVERY_S seconds within a stage)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console

PLAIN_PROGRESS_EVERY_S = 10.0  # stderr is a file or a pipe: a line per stage, and one this often within a stage


def progress_shown(
    console: Console, update: Callable[[str], None]
) -> Callable[[int, int, list[tuple[str, str]]], None]:
    """The batch runner's progress, on stderr: the live status line on a terminal; else plain lines (a log, `2>`
    to a file, CI), one when a stage begins and one every PLAIN_PROGRESS_EVERY_S seconds while it runs."""
    if console.is_terminal:
        return lambda *state: update(progress_text(*state))
    import time

    from qdoctor.gather.progress import stage_of

    last: dict[str, Any] = {"stage": None, "at": 0.0}

    def plain(done: int, total: int, running: list[tuple[str, str]]) -> None:
        if not running:
            return
        text = progress_text(done, total, running)
        stage, now = stage_of(text), time.monotonic()
        if stage != last["stage"] or now - last["at"] >= PLAIN_PROGRESS_EVERY_S:
            last["stage"], last["at"] = stage, now
            console.print(f"qdoctor: {text}", highlight=False, markup=False, soft_wrap=True)

    return plain


def progress_text(done: int, total: int, running: list[tuple[str, str]]) -> str:
    from rich.markup import escape

    now = "; ".join(f"{spec}: {stage}" for spec, stage in running[:3]) or "finishing"
    return escape(f"{done}/{total} done; {now}" if total > 1 else now)
