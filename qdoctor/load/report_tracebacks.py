"""The tracebacks and error messages pasted into a bug report: evidence even when its code cannot run here.

Each becomes a CrashInfo with phase "report" (qdoctor.facts.Target.report_crashes); qdoctor.diagnose maps it through
the crash table like a crash it saw, and says the finding comes from the report's traceback, not reproduced. Pure
text work: nothing runs here.
"""

from __future__ import annotations

import re

from qdoctor.facts import CrashInfo

# "NotImplementedError: Could not run ..." at the start of a line (after a prompt, a bullet or a quote marker).
_ERROR_LINE = re.compile(
    r"^[\s>*•+#`-]*(?:E\s+)?(?P<type>(?:[A-Za-z_][\w]*\.)*(?:[A-Z]\w*(?:Error|Exception)|NotImplementedError|"
    r"StopIteration|KeyboardInterrupt))(?::[ \t]*(?P<message>.*))?$"
)
_TRACEBACK = "Traceback (most recent call last):"
_FRAME = re.compile(r'^\s*File "[^"]+", line \d+')
MAX_REPORT_CRASHES = 12


def _message_continues(line: str) -> bool:
    """A message that goes on over the next lines (torch's long dispatch-key lists wrap)."""
    stripped = line.strip()
    return bool(stripped) and not _ERROR_LINE.match(line) and not stripped.startswith(("```", _TRACEBACK))


def report_crashes(text: str) -> list[CrashInfo]:
    """The distinct errors the report quotes, in order: each traceback's final error with its frames, and error
    lines quoted without one (``NotImplementedError: Could not run 'aten::add.out' ...``)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found: list[CrashInfo] = []
    seen: set[tuple[str, str]] = set()
    start_of_traceback: int | None = None
    for i, line in enumerate(lines):
        if _TRACEBACK in line:
            start_of_traceback = i
            continue
        match = _ERROR_LINE.match(line)
        if not match:
            continue
        kind = match.group("type").rsplit(".", 1)[-1]
        message = (match.group("message") or "").strip()
        j = i + 1
        while j < len(lines) and j <= i + 3 and _message_continues(lines[j]) and not message.endswith((".", "]")):
            message += " " + lines[j].strip()
            j += 1
        message = message.strip("`").strip()
        traceback = ""
        if start_of_traceback is not None and i - start_of_traceback < 200:
            frames = lines[start_of_traceback:i]
            if any(_FRAME.match(f) for f in frames):
                traceback = "\n".join([*frames, line.strip()])
            start_of_traceback = None
        if not message and not traceback:
            continue  # a bare exception name in prose ("raises a ValueError")
        key = (kind, message.split("\n")[0][:200])
        if key in seen:
            continue
        seen.add(key)
        found.append(CrashInfo(type=kind, message=message, phase="report", line=i + 1, traceback=traceback))
        if len(found) >= MAX_REPORT_CRASHES:
            break
    return found
