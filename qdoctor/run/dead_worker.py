"""What happened to a worker process that did not finish its check, and the partial report it leaves.

Runs in the parent process, which never imports torch: everything here reads plain data (the facts snapshot the
worker sent last, its exit code, the files its standard streams and faulthandler wrote).
"""

from __future__ import annotations

import dataclasses
import re
import signal
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from qdoctor.facts import CrashInfo, Facts, SourceLocation, Trace
from qdoctor.facts.location import deepest_frame, display_path, same_file, user_frame
from qdoctor.report.model import Report
from qdoctor.report.notes import unfinished_note

if TYPE_CHECKING:
    from qdoctor.run.check import CheckOptions

CAPTURE_HEAD = 32_000  # bytes of a captured stream kept from its start ...
CAPTURE_TAIL = 16_000  # ... and from its end

_SIGNALS = {
    "SIGSEGV": "crashed with a segmentation fault (SIGSEGV)",
    "SIGBUS": "crashed with a bus error (SIGBUS)",
    "SIGABRT": "aborted (SIGABRT): a native library gave up, e.g. a failed internal check",
    "SIGILL": "crashed on an illegal instruction (SIGILL): a kernel built for CPU features this machine lacks",
    "SIGFPE": "crashed with an arithmetic fault (SIGFPE)",
}
_THREAD_HEADER = re.compile(r"^(Current thread|Thread) 0x[0-9a-f]+ .*\(most recent call first\):|^Stack \(most recent")
_FRAME = re.compile(r'^\s+File "(?P<file>.+)", line (?P<line>\d+) in (?P<func>.+)$')


def signal_name(exit_code: int) -> str:
    try:
        return signal.Signals(-exit_code).name
    except ValueError:
        return f"signal {-exit_code}"


def describe_death(exit_code: int | None, peak_rss_mb: float | None) -> str:
    """What an exit code says about how the worker ended, as the middle of "the check ... (stage: ...)"."""
    if exit_code is None:
        return "lost its worker process"
    if exit_code < 0:
        name = signal_name(exit_code)
        if name in _SIGNALS:
            return _SIGNALS[name]
        if name == "SIGKILL":
            memory = f"; its peak memory was {peak_rss_mb:.0f} MB" if peak_rss_mb else ""
            return f"was killed (SIGKILL) by something other than qdoctor, usually the kernel's out-of-memory killer{memory}"
        return f"was killed by {name}"
    return f"exited with code {exit_code} (the checked code called os._exit() or exit() outside Python)"


def read_capture(path: Path) -> str:
    """A captured stream, bounded: the start and the end of it, with how much was left out between them."""
    try:
        size = path.stat().st_size
        with path.open("rb") as stream:
            if size <= CAPTURE_HEAD + CAPTURE_TAIL:
                data = stream.read()
                return data.decode("utf-8", errors="replace")
            head = stream.read(CAPTURE_HEAD)
            stream.seek(size - CAPTURE_TAIL)
            tail = stream.read()
    except OSError:
        return ""
    left_out = size - len(head) - len(tail)
    return (
        head.decode("utf-8", errors="replace")
        + f"\n[qdoctor: {left_out} more bytes of output not kept]\n"
        + tail.decode("utf-8", errors="replace")
    )


def parse_stack(text: str) -> list[list[tuple[str, int, str]]]:
    """faulthandler's dumps: one list of (file, line, function) per thread, most recent call first; the thread that
    crashed or received the signal ("Current thread") comes first."""
    blocks: list[tuple[bool, list[tuple[str, int, str]]]] = []
    for line in text.splitlines():
        if _THREAD_HEADER.match(line):
            blocks.append((not line.startswith("Thread "), []))
            continue
        frame = _FRAME.match(line)
        if frame and blocks:
            blocks[-1][1].append((frame["file"], int(frame["line"]), frame["func"]))
    return [frames for current, frames in sorted(blocks, key=lambda block: not block[0])]


def locate(stack_text: str, user_file: str | None) -> tuple[SourceLocation | None, list[str]]:
    """Where the process was: the deepest frame in the user's file (else the innermost frame), and the stack of the
    thread that was there, innermost first, as "file:line in function" lines."""
    threads = parse_stack(stack_text)
    if not threads:
        return None, []
    chosen = threads[0]
    if user_file:
        chosen = next((t for t in threads if any(same_file(f, user_file) for f, _, _ in t)), chosen)
    frames = [f"{display_path(file)}:{line} in {func}" for file, line, func in chosen]
    outermost_first = [traceback.FrameSummary(f, n, func, lookup_line=False) for f, n, func in reversed(chosen)]
    found = user_frame(outermost_first, user_file) or deepest_frame(outermost_first, lambda _: True)
    return found, frames


def where_text(location: SourceLocation | None) -> str:
    if location is None:
        return ""
    code = f" `{location.code}`" if location.code else ""
    return f" at {Path(location.file).name}:{location.line}{code}"


def location_of(crash: CrashInfo | None) -> SourceLocation | None:
    if crash is None or not crash.file or not crash.line:
        return None
    return SourceLocation(crash.file, crash.line, crash.code or "")


def crash_of_death(kind: str, message: str, stage: str, location: SourceLocation | None) -> CrashInfo:
    return CrashInfo(
        type=kind,
        message=message,
        phase="load" if stage.startswith("loading") else "run",
        module=None,
        file=location.file if location else None,
        line=location.line if location else None,
        code=location.code if location else None,
    )


def partial_report(facts: Facts, options: CheckOptions, reason: str, stage: str, crash: CrashInfo | None) -> Report:
    """The report of a check that did not finish: the last facts the worker sent, the rules that can run on them,
    every part not gathered marked so with the reason, and the crash placed where the rules look for it."""
    from qdoctor.run.check import build_report

    if crash is not None:
        if crash.phase == "load":
            if facts.target.load_crash is None:
                facts.target.load_crash = crash
        elif facts.trace is None:  # the model died before its traced run was complete: that run's crash
            facts.trace = Trace(events=[], output=[], crash=crash)
    for part in dataclasses.fields(facts):
        if getattr(facts, part.name) is None and part.name not in facts.unavailable:
            facts.unavailable[part.name] = f"not gathered: the check stopped (stage: {stage})"
    report = build_report(facts, options)
    report.notes.insert(0, unfinished_note(reason))
    return report
