"""Run a user's script the way a user pastes it into a bug report: as a module that is not ``__main__``, with its
folder on ``sys.path``, its stdout/stderr captured (bounded), an empty stdin, its warnings recorded, and the user's
line that created each nn.Module noted. If it raises part-way, the globals defined up to the crash are kept and the
crash becomes a fact (Target.load_crash)."""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import tokenize
import types
import warnings
import weakref
from pathlib import Path
from typing import Any

from torch import nn

from qdoctor.errors import ScriptFailedError, TargetError
from qdoctor.facts import SourceLocation, Target
from qdoctor.facts.location import crash_info, first_line, user_frame
from qdoctor.load.calls import CallLog, recording_calls

MAX_CAPTURED_CHARS = 64_000
MODULE_NAME = "__qdoctor_target__"


class BoundedText(io.TextIOBase):
    """A text sink that keeps the first MAX_CAPTURED_CHARS characters and counts the rest."""

    def __init__(self, limit: int = MAX_CAPTURED_CHARS) -> None:
        self._parts: list[str] = []
        self._kept = 0
        self._dropped = 0
        self._limit = limit

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        room = self._limit - self._kept
        if room > 0:
            self._parts.append(text[:room])
            self._kept += min(len(text), room)
        self._dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def getvalue(self) -> str:
        text = "".join(self._parts)
        if self._dropped:
            text += f"\n[qdoctor: {self._dropped} more characters of output not kept]\n"
        return text


@contextlib.contextmanager
def _record_module_origins(user_file: str, origins: weakref.WeakKeyDictionary) -> Any:
    """While the script runs, note the user's line that created each nn.Module.

    torch has no global module-creation hook, so nn.Module.__init__ is wrapped for the duration and restored.
    """
    original_init = nn.Module.__init__
    user_path = str(Path(user_file).resolve())

    def init(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        found = user_frame(sys._getframe(1), user_path)
        if found is not None:
            try:
                origins[self] = SourceLocation(user_path, found.line, found.code)
            except TypeError:  # a module that cannot be weakly referenced
                pass

    module_class: Any = nn.Module  # patched for the duration of the script, restored below
    module_class.__init__ = init
    try:
        yield
    finally:
        module_class.__init__ = original_init


def _decode_source(path: Path, raw: bytes) -> str:
    """The script's text, decoded as Python would: UTF-8 unless a coding declaration (PEP 263) says otherwise."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError:  # undecodable first lines, or a coding declaration naming no known codec
        encoding = "utf-8"
    try:
        return raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        start = getattr(exc, "start", 0)
        line = raw[:start].count(b"\n") + 1
        name = "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        raise TargetError(
            f"{path} is not {name} text (line {line}, byte 0x{raw[start]:02x}): save it as UTF-8 "
            "or declare its encoding on the first line (# -*- coding: latin-1 -*-)"
        ) from None


def run_script(
    path: Path, origins: weakref.WeakKeyDictionary, target: Target, calls: CallLog | None = None
) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TargetError(f"cannot read {path}: {exc.strerror or exc}") from None
    source = _decode_source(path, raw)
    target.script_text = source
    try:
        code = compile(source, str(path.resolve()), "exec")
    except SyntaxError as exc:
        raise TargetError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None

    module = types.ModuleType(MODULE_NAME)
    module.__file__ = str(path.resolve())
    namespace = module.__dict__
    stdout, stderr = BoundedText(), BoundedText()
    folder = str(path.resolve().parent)
    saved_path, saved_argv, saved_stdin = list(sys.path), list(sys.argv), sys.stdin
    sys.path.insert(0, folder)
    sys.argv = [str(path)]
    # An empty stdin: a script that reads it gets end-of-file at once instead of waiting for a terminal.
    sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    # Registered so that classes defined in the script can be pickled (torch.save) and deep-copied.
    sys.modules[MODULE_NAME] = module
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
            _record_module_origins(str(path), origins),
            recording_calls(str(path), calls if calls is not None else CallLog()),
        ):
            warnings.simplefilter("always")
            try:
                exec(code, namespace)
            except KeyboardInterrupt:
                raise
            except ModuleNotFoundError as exc:
                if not _defines_any_module(namespace):
                    raise ScriptFailedError(
                        f"{path}: the script imports '{exc.name}', which is not installed ({exc})",
                        str(exc),
                        exc.name,
                        explained=f"{path}: the script imports '{exc.name}': {{hint}}",
                        crash=crash_info(exc, "load", str(path)),
                    ) from None
                target.load_crash = crash_info(exc, "load", str(path))
            except BaseException as exc:
                target.load_crash = crash_info(exc, "load", str(path))
    finally:
        sys.path[:] = saved_path
        sys.argv = saved_argv
        sys.stdin = saved_stdin
    target.user_stdout = stdout.getvalue()
    target.user_stderr = stderr.getvalue()
    seen: set[str] = set()
    for w in caught:
        text = first_line(f"{w.category.__name__}: {w.message}")[:300]
        if text not in seen:
            seen.add(text)
            target.warnings.append(text)
    return namespace


def _defines_any_module(namespace: dict[str, Any]) -> bool:
    return any(isinstance(v, nn.Module) for v in namespace.values())


def import_attribute(spec: str) -> tuple[dict[str, Any], Any]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TargetError(f"cannot import '{module_name}': {exc}") from None
    except Exception as exc:
        raise TargetError(f"importing '{module_name}' raised {type(exc).__name__}: {exc}") from None
    if not hasattr(module, attr):
        raise TargetError(f"'{module_name}' has no attribute '{attr}'")
    return vars(module), getattr(module, attr)
