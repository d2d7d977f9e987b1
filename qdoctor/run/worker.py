"""The process that checks one target. qdoctor.run.batch starts one per target (multiprocessing, spawn context).

The user's script runs here, next to native quantized kernels that can abort the process. Whatever happens, the
parent keeps what this process told it before, so a check that dies still gives a report. Messages, over a Pipe:

    worker -> parent
      ("ready",)                    qdoctor and torch are imported: the timeout clock starts
      ("facts", facts)              a stage begins; ``facts`` is everything gathered so far (pickled: a snapshot)
      ("progress", message)         the stage that begins ("tracing one forward pass", ...)
      ("turn",)                     asks for the machine to measure time alone (only when checks run in parallel)
      ("turn-over",)                done measuring
      ("done", report)              the check finished
      ("could-not-check", message, no_model)   qdoctor.errors.TargetError: bad input, one line
      ("exit", code, crash)         the checked code called sys.exit(); ``crash`` locates the call
      ("failed", message, traceback)           qdoctor's own error
    parent -> worker
      ("go",)                       your turn to measure (the parent has paused the other workers)

Standard streams are redirected at the file-descriptor level (stdin from /dev/null, stdout and stderr to files in
the job's folder), so nothing the script or a native library prints reaches qdoctor's output, and a script that reads
stdin gets end-of-file instead of waiting. faulthandler writes the Python stack to a third file when the process
crashes (SIGSEGV, SIGABRT, ...) or when the parent asks for it (SIGUSR1) before stopping a check that timed out.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

STDOUT_FILE = "stdout.txt"
STDERR_FILE = "stderr.txt"
STACK_FILE = "stack.txt"  # faulthandler's dumps
STACK_SIGNAL = getattr(signal, "SIGUSR1", None)  # the parent's "where are you?" before a timeout kill

_stack_file: Any = None  # kept open for faulthandler for the life of the process


def _redirect_standard_streams(folder: Path) -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for fd, name in ((1, STDOUT_FILE), (2, STDERR_FILE)):
        target = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)


def _enable_stack_dumps(folder: Path) -> None:
    global _stack_file
    _stack_file = open(folder / STACK_FILE, "w")
    faulthandler.enable(file=_stack_file, all_threads=True)
    if STACK_SIGNAL is not None and hasattr(faulthandler, "register"):
        faulthandler.register(STACK_SIGNAL, file=_stack_file, all_threads=True)


def _exit_when_orphaned() -> None:
    """If the parent dies (killed, crashed), stop: an orphaned check of a hanging script would run forever."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="qdoctor-orphan-watch", daemon=True).start()


class _SlotFromParent:
    """qdoctor.gather.exclusive's slot in a parallel run: ask the parent for the machine, measure, hand it back.

    Re-entrant: a measurement inside another (a fix verified inside a benchmark phase) does not ask twice.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.depth = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.depth == 0:
            self.conn.send(("turn",))
            self.conn.recv()  # ("go",): the other workers are paused
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0:
                self.conn.send(("turn-over",))


def _facts_before_loading(spec: str) -> Any:
    """The facts known before the script runs: what the parent reports if the process dies while loading it."""
    from qdoctor.facts import Facts, Target
    from qdoctor.gather.environment import gather_environment

    path = Path(spec)
    file = str(path.resolve()) if path.is_file() else None
    target = Target(spec=spec, file=file, subject_name="", float_name=None, inputs_name=None, inputs=[])
    return Facts(target=target, environment=gather_environment())


def main(conn: Connection, spec: str, options: Any, folder: str, take_turns: bool) -> None:
    """Check ``spec`` with ``options`` (qdoctor.check.CheckOptions) and send the outcome to the parent."""
    if hasattr(os, "setpgrp"):
        # A process group of its own: the parent pauses and stops the script's own subprocesses with it, and the
        # terminal's Ctrl-C reaches only the parent, which then stops every worker.
        os.setpgrp()
    _redirect_standard_streams(Path(folder))
    _enable_stack_dumps(Path(folder))
    _exit_when_orphaned()
    try:
        from qdoctor.errors import NoModelError, TargetError
        from qdoctor.facts.location import crash_info
        from qdoctor.gather import exclusive
        from qdoctor.run.check import check

        if take_turns:
            exclusive.install(_SlotFromParent(conn))
        facts = _facts_before_loading(spec)
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        _leave()
    conn.send(("ready",))
    conn.send(("facts", facts))
    try:
        report = check(
            spec,
            options,
            progress=lambda message: conn.send(("progress", message)),
            on_stage=lambda _message, gathered: conn.send(("facts", gathered)),
        )
    except TargetError as exc:
        conn.send(("could-not-check", str(exc), isinstance(exc, NoModelError)))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, (int, str, type(None))) else repr(exc.code)
        conn.send(("exit", code, crash_info(exc, "run", facts.target.file)))
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {str(exc).strip()[:300]}", traceback.format_exc()))
    else:
        try:
            conn.send(("done", report))
        except Exception as exc:
            conn.send(("failed", f"the report could not be sent: {type(exc).__name__}: {exc}", traceback.format_exc()))
    _leave()


def _leave() -> NoReturn:
    """End the process now. Its result is sent; Python's teardown of torch takes seconds on a loaded machine, and a
    thread the script left running would keep the process alive. Flush what was written first."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)  # C stdio buffers of native code that printed
    os._exit(0)
