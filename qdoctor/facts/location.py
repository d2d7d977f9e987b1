"""Where in the user's code something happened: the one helper that finds the user's frame (in a traceback, a live
stack, or frames read back from text), the one test of whether two paths name the same file, the one way a path is
printed (``display_path``: relative to the current directory when the file is under it), the first line of an
exception, and a CrashInfo made from an exception."""

from __future__ import annotations

import functools
import linecache
import os
import re
import traceback
import types
from collections.abc import Callable, Iterable
from pathlib import Path

from qdoctor.facts.data import CrashInfo, SourceLocation

# A traceback, a live frame (its callers are walked), or frames listed outermost first as ``traceback.extract_tb``
# and ``traceback.StackSummary`` list them (build FrameSummary(file, line, name, line=code) for parsed text).
Frames = types.TracebackType | types.FrameType | Iterable[traceback.FrameSummary]


def deepest_frame(frames: Frames | None, matches: Callable[[str], bool]) -> SourceLocation | None:
    """The innermost frame whose file ``matches``: where that code was when it raised (or called)."""
    if frames is None:
        return None
    if isinstance(frames, types.FrameType):
        frame: types.FrameType | None = frames
        while frame is not None:  # innermost first: the first match is the deepest
            if matches(frame.f_code.co_filename):
                return _location(frame.f_code.co_filename, frame.f_lineno, None)
            frame = frame.f_back
        return None
    found: tuple[str, int | None, str | None] | None = None
    if isinstance(frames, types.TracebackType):
        for tb_frame, lineno in traceback.walk_tb(frames):  # outermost first: the last match is the deepest
            if matches(tb_frame.f_code.co_filename):
                found = (tb_frame.f_code.co_filename, lineno, None)
    else:
        for summary in frames:
            if matches(summary.filename):
                found = (summary.filename, summary.lineno, summary.line)
    return _location(*found) if found else None


def user_frame(frames: Frames | None, user_file: str | None) -> SourceLocation | None:
    """The deepest frame of the user's file: where their code was when it raised (or called)."""
    if not user_file:
        return None
    return deepest_frame(frames, lambda file: same_file(file, user_file))


def _location(file: str, line: int | None, code: str | None) -> SourceLocation:
    if code is None:
        code = linecache.getline(file, line or 0)
    return SourceLocation(file, line or 0, code.strip())


def display_path(file: str, root: str | None = None) -> str:
    """``file`` as reports print it, the way ruff and pytest do: relative to ``root`` (default: the current
    directory) with POSIX separators when the file lies under it, else as given (a relative path, or a target that
    is not a path such as ``package.module:attribute``, stays as it is). The absolute path is never what a report
    prints for a file under the directory it was run from (a JSON document keeps it in a field of its own). An
    installed library's file is named from its package on, wherever the environment lives
    (".venv/lib/python3.11/site-packages/torchvision/models/resnet.py" -> "torchvision/models/resnet.py")."""
    if not os.path.isabs(file):
        return file
    installed = package_path(file)
    if installed is not None:
        return installed
    base = os.path.abspath(root if root is not None else os.getcwd())
    try:
        return Path(os.path.abspath(file)).relative_to(base).as_posix()
    except ValueError:
        return file


def package_path(file: str) -> str | None:
    """An installed library's file named from its package on (".../site-packages/torchvision/models/resnet.py" ->
    "torchvision/models/resnet.py"); None for a file that is not in site-packages or dist-packages."""
    parts = file.replace("\\", "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1 :])
    return None


_TRACEBACK_FILE = re.compile(r'(File ")([^"]+)(")')


def display_traceback(text: str, root: str | None = None) -> str:
    """A traceback's text with each frame's file printed as ``display_path`` prints it."""
    return _TRACEBACK_FILE.sub(lambda m: m.group(1) + display_path(m.group(2), root) + m.group(3), text)


# an installed library's file inside a message (torch names its own files: "registered at .../site-packages/torch/...")
_INSTALLED_PREFIX = re.compile(r"[^\s\"'(\[]*[/\\](?:site|dist)-packages[/\\]")


def display_message(text: str) -> str:
    """An error message with every installed library's file named from its package on, as ``display_path`` names it
    (torch's messages quote its own files by their absolute path)."""
    return _INSTALLED_PREFIX.sub("", text)


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (relative, symlinked or spelled differently)."""
    return a == b or _resolved(a) == _resolved(b)


def _resolved(path: str) -> str:
    if path.startswith("<"):  # "<string>", "<frozen importlib._bootstrap>": code with no file
        return path
    if not os.path.isabs(path):  # depends on the working directory: not cached
        return _resolve(path)
    return _resolved_absolute(path)


@functools.lru_cache(maxsize=1024)
def _resolved_absolute(path: str) -> str:
    return _resolve(path)  # a frame walk asks about the same few files again and again


def _resolve(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return path


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
