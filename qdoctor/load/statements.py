"""Run a script's top-level statements one by one, as a notebook's "run all" with errors shown: a statement that
raises is recorded (type, message, line, cause) and the next one runs. Names it would have bound stay unbound, so the
statements that need them fail on their own (and are recorded too).

``--stop-on-error`` runs the script in one ``exec`` instead (qdoctor.load.script), stopping at the first error.
"""

from __future__ import annotations

import ast
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import CodeType
from typing import Any


@dataclass(frozen=True)
class Statement:
    line: int
    code: CodeType
    binds: frozenset[str]  # the names it binds at top level (left unbound when it raises)


def compile_statements(source: str, filename: str) -> list[Statement]:
    """Each top-level statement compiled on its own, with the script's line numbers (for tracebacks and origins).

    ``from __future__`` imports are compiled with every statement after them (their flags apply to the whole file).
    Raises SyntaxError like ``compile`` would.
    """
    tree = ast.parse(source, filename)
    compile(tree, filename, "exec", dont_inherit=True)  # the whole script's syntax errors first, as exec would
    tree = main_guard_lifted(tree)
    future_flags = 0
    compiled = []
    for stmt in tree.body:
        module = ast.Module(body=[stmt], type_ignores=[])
        code = compile(module, filename, "exec", flags=future_flags, dont_inherit=True)
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            future_flags |= code.co_flags & _FUTURE_MASK
        compiled.append(Statement(stmt.lineno, code, frozenset(_binds(stmt))))
    return compiled


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    named = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    return named and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)


def main_guard_lifted(tree: ast.Module) -> ast.Module:
    """The script with the body of each top-level ``if __name__ == "__main__":`` in place of the guard: qdoctor runs
    the script as a module that is not ``__main__`` (its classes must pickle and its source must be found under the
    module's own name), yet a script run from the command line runs its guarded block, and so does qdoctor."""
    body: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and _is_main_guard(stmt.test):
            body.extend(stmt.body)
        else:
            body.append(stmt)
    return ast.Module(body=body, type_ignores=tree.type_ignores)


def _binds(stmt: ast.stmt) -> set[str]:
    """The names a top-level statement binds (not those bound inside the functions or classes it defines)."""
    names: set[str] = set()
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        todo.extend(ast.iter_child_nodes(node))
    return names


# The compiler flags that `from __future__ import ...` sets (annotations, generator_stop, ...).
_FUTURE_MASK = 0
for _name in ("annotations", "generator_stop", "barry_as_FLUFL"):
    _feature = getattr(__import__("__future__"), _name, None)
    if _feature is not None:
        _FUTURE_MASK |= _feature.compiler_flag


class StatementTimeout(BaseException):
    """Raised inside a statement that ran past its time budget (a BaseException: the script's ``except Exception``
    does not swallow it)."""


@contextlib.contextmanager
def _time_budget(seconds: float | None) -> Iterator[None]:
    """Raise StatementTimeout in the running statement after ``seconds`` (main thread, POSIX; else no limit)."""
    usable = (
        seconds is not None and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    )
    if not usable or seconds is None:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise StatementTimeout(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_statements(
    statements: list[Statement],
    namespace: dict[str, Any],
    on_error: Callable[[BaseException, int, int | None], None],
    seconds: float | None = None,
) -> None:
    """Execute each statement in ``namespace``; ``on_error(exception, line, follows_from)`` for each one that raises,
    where ``follows_from`` is the line of an earlier statement that raised before binding the name a NameError names.

    KeyboardInterrupt stops everything (re-raised); SystemExit (the script called ``sys.exit``/``exit()``) ends the
    run and is recorded unless its code is 0 or None (a normal end), as it would end the script. A statement still running after ``seconds`` is stopped
    with StatementTimeout (reported to ``on_error`` like an error).
    """
    unbound: dict[str, int] = {}  # name -> the line of the statement that raised before binding it
    for statement in statements:
        try:
            with _time_budget(seconds):
                exec(statement.code, namespace)
        except KeyboardInterrupt:
            raise
        except SystemExit as exc:
            if exc.code not in (None, 0):  # sys.exit(0) / exit() is the script's normal end, not an error
                on_error(exc, statement.line, None)
            return
        except BaseException as exc:
            name = getattr(exc, "name", None) if isinstance(exc, NameError) else None
            on_error(exc, statement.line, unbound.get(name) if isinstance(name, str) else None)
            for bound in statement.binds:
                if bound not in namespace:
                    unbound.setdefault(
                        bound, unbound.get(name, statement.line) if isinstance(name, str) else statement.line
                    )
        else:
            for bound in statement.binds:
                unbound.pop(bound, None)
