"""Where in the user's code something happened: the one helper that finds the user's frame in a traceback or
stack, the first line of an exception, and a CrashInfo made from an exception."""

from __future__ import annotations

import traceback
import types
from pathlib import Path
from typing import Any

from qdoctor.facts.data import CrashInfo, SourceLocation


def user_frame(tb_or_stack: Any, user_file: str | None) -> SourceLocation | None:
    """The deepest frame of the user's file in a traceback: where their code was when it raised."""
    if not user_file:
        return None
    frames = traceback.extract_tb(tb_or_stack) if isinstance(tb_or_stack, types.TracebackType) else tb_or_stack
    found = None
    for frame in frames:
        if same_file(frame.filename, user_file):
            found = SourceLocation(frame.filename, frame.lineno or 0, (frame.line or "").strip())
    return found


def same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def first_line(message: str) -> str:
    """The first non-empty line of an exception's message (torch's messages run on for pages)."""
    return (message.strip().splitlines() or [""])[0].strip()


def exception_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line`` of an exception, cut at ``limit`` characters; the type alone when it has no message."""
    text = first_line(str(exc))
    return f"{type(exc).__name__}: {text[:limit]}" if text else type(exc).__name__


def crash_info(exc: BaseException, phase: str, user_file: str | None, module: str | None = None) -> CrashInfo:
    loc = user_frame(exc.__traceback__, user_file)
    message = str(exc).strip() or repr(exc)
    return CrashInfo(
        type=type(exc).__name__,
        message=message,
        phase=phase,
        module=module,
        file=loc.file if loc else None,
        line=loc.line if loc else None,
        code=loc.code if loc else None,
        traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:],
    )
