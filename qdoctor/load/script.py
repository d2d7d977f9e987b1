"""Run a user's script the way a user pastes it into a bug report: as a module that is not ``__main__`` (its
``if __name__ == "__main__":`` block runs all the same, as from the command line, with ``sys.argv`` holding only the
script: argparse defaults), with its folder on ``sys.path``, its stdout/stderr captured (bounded), an empty stdin, its warnings recorded, and the user's
line that created each nn.Module noted. It runs statement by statement (qdoctor.load.statements): each top-level
statement that raises is recorded (Target.script_errors, the first one is Target.load_crash) and the next one runs;
with --stop-on-error it runs in one exec and the globals defined up to the crash are kept. Offline stand-ins
(qdoctor.load.standins) replace pretrained weights, datasets and a GPU this machine does not have. A bug report
(Markdown or text) runs its Python (qdoctor.load.report_text)."""

from __future__ import annotations

import ast
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
from qdoctor.facts import ScriptText, SourceLocation, Substitution, Target
from qdoctor.facts.location import crash_info, first_line, user_frame
from qdoctor.facts.report import StaticRead
from qdoctor.load.breakpoints import skipping_breakpoints
from qdoctor.load.calls import CallLog, recording_calls
from qdoctor.load.flow_steps import FlowLog, recording_flow_steps
from qdoctor.load.left_out import bound_anywhere, left_out
from qdoctor.load.options import LoadOptions
from qdoctor.load.report_text import ExtractedScript
from qdoctor.load.standin_names import stand_in_names
from qdoctor.load.standins import StandIns
from qdoctor.load.statements import StatementTimeout, compile_statements, main_guard_lifted, run_statements
from qdoctor.load.static_read import read_steps

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


def _read_source(path: Path, raw: bytes, target: Target) -> tuple[str, ExtractedScript | None]:
    """The Python to run: the script itself, or the Python of a bug report (Markdown or text, qdoctor.load.report_text)
    with the report's line numbering."""
    from qdoctor.load.report_text import extract, is_report

    if not is_report(path.name):
        return _decode_source(path, raw), None
    from_stdin = path.name == "stdin.md" and path.parent.name.startswith("qdoctor-stdin-")  # qdoctor.cli: `check -`
    name = "- (standard input)" if from_stdin else str(path)
    if b"\x00" in raw:
        raise TargetError(f"{name}: binary data, not a report or a script")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TargetError(
            f"{name}: binary data, not a report or a script (not UTF-8 text: line {line}, byte 0x{raw[exc.start]:02x})"
        ) from None
    extracted = extract(text, name)
    target.report_text = ScriptText(
        extracted.kind, extracted.ran, extracted.skipped, stdin=from_stdin, reindented=extracted.reindented
    )
    report_file = str(path.resolve())
    for crash in extracted.crashes:
        crash.file = report_file
    target.report_crashes = extracted.crashes
    return extracted.source, extracted


def run_script(
    path: Path,
    origins: weakref.WeakKeyDictionary,
    target: Target,
    options: LoadOptions | None = None,
    stand_ins: StandIns | None = None,
    calls: CallLog | None = None,
    flow_steps: FlowLog | None = None,
) -> dict[str, Any]:
    """Run the script (or the report's Python); ``stand_ins`` records the substitutions (made here when not given),
    ``calls`` the calls the script makes to its models (qdoctor.load.calls), ``flow_steps`` the quantization flow
    steps it runs (qdoctor.load.flow_steps)."""
    options = options or LoadOptions()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TargetError(f"cannot read {path}: {exc.strerror or exc}") from None
    source, extracted = _read_source(path, raw, target)
    target.script_text = source
    filename = str(path.resolve())
    try:
        if options.keep_going:
            statements = compile_statements(source, filename)
        else:
            code = compile(main_guard_lifted(ast.parse(source, filename)), filename, "exec")
    except SyntaxError as exc:
        raise TargetError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except ValueError as exc:  # "source code string cannot contain null bytes"
        raise TargetError(f"{path}: not Python source ({exc})") from None

    module = types.ModuleType(MODULE_NAME)
    module.__file__ = filename
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
    stand_ins = stand_ins or StandIns(filename, enabled=options.stand_ins)
    stand_ins.source_lines = source.splitlines()
    lines = source.splitlines()
    names_stood_in: list[Substitution] = []
    if extracted is not None and options.stand_ins:  # a report leaves out imports and the classes it took elsewhere
        values, names_stood_in = stand_in_names(source, filename)
        namespace.update(values)
    raised_statements: list[int] = []
    bound = bound_anywhere(source) if extracted is not None else None
    gaps: set[int] = set()  # lines whose statement raised for something left out (qdoctor.load.left_out)
    gap_followers: dict[int, list[int]] = {}  # a left-out line -> the lines that then missed a name it would bind

    def record(exc: BaseException, line: int, follows_from: int | None) -> None:
        if isinstance(exc, StatementTimeout):  # the script's own long loop: qdoctor measures speed itself
            target.stopped_lines.append(line)
            return
        raised_statements.append(line)
        gap = left_out(exc, line, bound)
        if gap is None and extracted is not None and line in extracted.guessed_lines:
            gap = f"line {line}: {type(exc).__name__} in lines qdoctor re-indented by guess (not the report's code)"
        if gap is None and follows_from is not None and follows_from in gaps:
            gaps.add(line)
            gap_followers.setdefault(follows_from, []).append(line)
            return
        if gap is not None:
            gaps.add(line)
            target.left_out.append(gap)
            return
        if isinstance(exc, ModuleNotFoundError) and not _defines_any_module(namespace) and extracted is None:
            # A package this environment lacks, before any model: nothing of the script can be checked here.
            raise _missing_module(path, exc) from None
        crash = crash_info(exc, "load", str(path))
        crash.follows_from = follows_from
        if crash.line is None:  # raised before any frame of the script (a SyntaxError of exec'd text, ...)
            crash.file, crash.line = filename, line
            crash.code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        target.script_errors.append(crash)

    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
            _record_module_origins(str(path), origins),
            recording_calls(str(path), calls if calls is not None else CallLog()),
            recording_flow_steps(str(path), flow_steps if flow_steps is not None else FlowLog(), source),
            stand_ins.installed(),
            skipping_breakpoints(str(path), target.breakpoints_skipped),
        ):
            warnings.simplefilter("always")
            if options.keep_going:
                run_statements(statements, namespace, record, options.statement_seconds)
                first = target.script_errors[0] if target.script_errors else None
                target.load_crash = first
            else:
                try:
                    exec(code, namespace)
                except KeyboardInterrupt:
                    raise
                except ModuleNotFoundError as exc:
                    if not _defines_any_module(namespace) and extracted is None:
                        raise _missing_module(path, exc) from None
                    target.load_crash = crash_info(exc, "load", str(path))
                except SystemExit as exc:
                    if exc.code not in (None, 0):  # sys.exit(0) is the script's normal end
                        target.load_crash = crash_info(exc, "load", str(path))
                except BaseException as exc:
                    target.load_crash = crash_info(exc, "load", str(path))
    finally:
        sys.path[:] = saved_path
        sys.argv = saved_argv
        sys.stdin = saved_stdin
    target.substitutions = names_stood_in + stand_ins.used
    for origin, followers in gap_followers.items():
        where = ", ".join(str(n) for n in followers)
        target.left_out.append(f"line{'s' if len(followers) > 1 else ''} {where}: names line {origin} never bound")
    if extracted is not None:
        target.static_read = _static_read(source, extracted, target, raised_statements, filename)
    target.user_stdout = stdout.getvalue()
    target.user_stderr = stderr.getvalue()
    seen: set[str] = set()
    for w in caught:
        text = first_line(f"{w.category.__name__}: {w.message}")[:300]
        if text not in seen:
            seen.add(text)
            target.warnings.append(text)
    return namespace


def _static_read(
    source: str, extracted: ExtractedScript, target: Target, raised: list[int], filename: str
) -> StaticRead:
    """The report's quantization steps read without running them (qdoctor.load.static_read): its statements that
    raised, or that never ran after --stop-on-error stopped, are marked as not run."""
    not_run = set(raised)
    crash = target.load_crash
    if crash is not None and not target.script_errors:  # --stop-on-error: nothing after the crash ran
        first = crash.line or 0
        not_run.update(n for n in range(first, len(source.splitlines()) + 1))
    return read_steps(source, not_run, extracted.unrun_code, filename)


def _missing_module(path: Path, exc: ModuleNotFoundError) -> ScriptFailedError:
    """The script imports a module that is not installed and defined no model: nothing to check."""
    return ScriptFailedError(
        f"{path}: the script imports '{exc.name}', which is not installed ({exc})",
        str(exc),
        exc.name,
        explained=f"{path}: the script imports '{exc.name}': {{hint}}",
        crash=crash_info(exc, "load", str(path)),
    )


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
