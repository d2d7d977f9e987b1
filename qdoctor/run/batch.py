"""Check targets in worker processes, several at a time, and never lose a report.

Each target runs in its own process (qdoctor.run.worker; multiprocessing's spawn context, so nothing of this process is
inherited). A check that hangs is stopped after ``timeout`` seconds; one whose process dies (segfault, abort,
os._exit, killed for memory) or that calls sys.exit() still gives a report: the facts its worker sent before the
failure, the rules that can run on them, and what happened (qdoctor.run.dead_worker). This process never imports torch.

Timing: parallel checks would disturb each other's measurements, so when checks run in parallel a worker measures
only while it has the machine: it asks for a turn, and the other workers are paused (SIGSTOP) until it is done. Their
timeout clocks stop while they are paused.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from qdoctor.facts.location import display_path
from qdoctor.report.model import Report
from qdoctor.report.notes import measured_alone_note
from qdoctor.run import dead_worker as postmortem
from qdoctor.run import worker
from qdoctor.run.progress_display import STARTING

DEFAULT_TIMEOUT = 300.0
STARTUP_ALLOWANCE = 120.0  # seconds to import torch before the timeout clock starts (a loaded machine is slow)
EXIT_GRACE = 5.0  # seconds a worker that sent its result may take to exit before it is killed
STACK_WAIT = 1.0  # seconds for faulthandler to write the stack of a check that timed out
CAN_PAUSE = hasattr(signal, "SIGSTOP") and hasattr(signal, "SIGCONT")

CHECKED = "checked"
COULD_NOT_CHECK = "could not check"
NO_MODEL = "no model"  # a file found in a directory that defines no nn.Module: a helper, skipped
TIMED_OUT = "timed out"
CRASHED = "crashed"  # the worker process died on a signal
EXITED = "exited"  # the checked code called sys.exit() or os._exit()
INTERNAL_ERROR = "internal error"

SKIPPED_NAMES = {"__init__.py", "__main__.py", "setup.py", "conftest.py"}


@dataclass
class Planned:
    """One target to check, as found on the command line or in a directory."""

    spec: str
    from_directory: bool = False
    error: str | None = None  # known without starting a worker: a missing file, a directory without models


@dataclass
class Outcome:
    spec: str
    status: str
    report: Report | None = None  # None when the target could not be checked at all (bad input)
    reason: str | None = None  # one line: why the check did not finish; None when it did
    debug: str = ""  # qdoctor's traceback, or the stack of the dead worker: shown with --debug
    seconds: float = 0.0
    turns: list[tuple[float, float]] = field(default_factory=list)  # when it measured alone (wall clock)

    def exit_code(self, fail_on: str = "warning", exit_zero: bool = False) -> int:
        if self.status == NO_MODEL:
            return 0
        if self.status != CHECKED or self.report is None:
            return 2
        return 0 if exit_zero else self.report.exit_code(fail_on)


def worst_exit_code(outcomes: list[Outcome], fail_on: str = "warning", exit_zero: bool = False) -> int:
    return max((o.exit_code(fail_on, exit_zero) for o in outcomes), default=0)


def model_files(folder: Path) -> list[Path]:
    """The model files directly in ``folder``: *.py files that use torch (not tests, setup or package files)."""
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name in SKIPPED_NAMES or path.name.startswith("test_") or path.name.endswith("_test.py"):
            continue
        try:
            if b"torch" in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


def expand_targets(arguments: list[str]) -> list[Planned]:
    """Targets in the order given; a directory stands for its model files (not searched recursively)."""
    planned: list[Planned] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = model_files(path)
            if not files:
                planned.append(
                    Planned(
                        argument,
                        error=f"{argument}: no model files in this directory "
                        "(*.py files that use torch; subdirectories are not searched)",
                    )
                )
            planned.extend(Planned(str(f), from_directory=True) for f in files)
        elif not path.exists() and (argument.endswith(".py") or os.sep in argument or ":" not in argument):
            planned.append(Planned(argument, error=f"no such file: {argument}"))
        else:
            planned.append(Planned(argument))
    return planned


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _signal_group(pid: int, sig: int) -> None:
    """Signal the worker and whatever processes the checked script started (the worker leads its own process
    group, see worker.main); just the worker where there are no process groups."""
    if hasattr(os, "killpg") and hasattr(os, "getpgid"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
                return
    os.kill(pid, sig)


def _wait_until_stopped(pid: int, limit: float = 0.2) -> None:
    """SIGSTOP takes effect asynchronously: wait (briefly) until the process is really stopped before the machine is
    given to another worker (Linux; elsewhere the signal is trusted)."""
    stat = Path(f"/proc/{pid}/stat")
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("T", "t"):
            return
        time.sleep(0.001)


def _peak_rss_mb(pid: int) -> float | None:
    """The worker's peak resident memory so far (Linux), to say why the kernel may have killed it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class _Worker:
    index: int
    planned: Planned
    process: Any
    conn: Any
    folder: Path
    started: float
    deadline: float
    ready: bool = False
    stage: str = STARTING
    facts: Any = None  # the last snapshot of the facts
    result: tuple | None = None  # the message that ended the check
    connection_lost: bool = False
    unreadable: str | None = None  # why a message from the worker could not be unpickled in this process
    paused_since: float | None = None
    turns: list[tuple[float, float]] = field(default_factory=list)  # (start, end) wall-clock: measuring alone
    peak_rss_mb: float | None = None
    timed_out: bool = False
    closing_since: float | None = None  # the check ended; waiting for the process to exit
    seconds: float = 0.0


@dataclass
class _SlotQueue:
    """Who may measure now, who waits for it. Only one worker measures at a time; the others are paused."""

    holder: _Worker | None = None
    waiting: deque = field(default_factory=deque)


class Runner:
    """Runs planned checks, at most ``jobs`` worker processes at a time. Use ``run()``."""

    def __init__(
        self,
        options: Any,
        jobs: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        on_progress: Callable[[int, int, list[tuple[str, str]]], None] | None = None,
    ) -> None:
        self.options = options  # qdoctor.check.CheckOptions
        self.jobs = max(1, jobs or default_jobs())
        self.timeout = timeout
        self.on_progress = on_progress or (lambda done, total, running: None)
        self.context = multiprocessing.get_context("spawn")
        self.turns = _SlotQueue()
        self.take_turns = False

    # ------------------------------------------------------------------------------------------------ the loop

    def run(self, planned: list[Planned]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        queue: deque[tuple[int, Planned]] = deque()
        for index, item in enumerate(planned):
            if item.error is not None:
                outcomes[index] = Outcome(item.spec, COULD_NOT_CHECK, reason=item.error)
            else:
                queue.append((index, item))
        gather = getattr(self.options, "gather", None)
        measures = bool(getattr(gather, "bench", False) or getattr(gather, "profile", False))
        self.take_turns = measures and min(self.jobs, len(queue)) > 1
        running: list[_Worker] = []
        try:
            while queue or running:
                while queue and self.turns.holder is None and sum(w.closing_since is None for w in running) < self.jobs:
                    index, item = queue.popleft()
                    running.append(self._start(index, item))
                self.on_progress(
                    len(outcomes), len(planned), [(w.planned.spec, w.stage) for w in running if w.result is None]
                )
                self._wait(running)
                for w in list(running):
                    self._drain(w)
                    self._watch(w)
                    if self._finished(w):
                        running.remove(w)
                        outcomes[w.index] = self._outcome(w)
                        shutil.rmtree(w.folder, ignore_errors=True)
                self._pass_turns(running)
        finally:
            for w in running:  # interrupted (Ctrl-C) or failed: leave no process behind
                self._kill(w)
                shutil.rmtree(w.folder, ignore_errors=True)
        self.on_progress(len(outcomes), len(planned), [])
        return [outcomes[i] for i in range(len(planned))]

    def _start(self, index: int, item: Planned) -> _Worker:
        folder = Path(tempfile.mkdtemp(prefix="qdoctor-worker-"))
        parent_end, child_end = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=worker.main,
            args=(child_end, item.spec, self.options, str(folder), self.take_turns),
            name=f"qdoctor-check-{index}",
            daemon=True,
        )
        process.start()
        child_end.close()
        now = time.monotonic()
        return _Worker(index, item, process, parent_end, folder, now, now + self.timeout + STARTUP_ALLOWANCE)

    def _wait(self, running: list[_Worker]) -> None:
        now = time.monotonic()
        waitables = []
        next_deadline = now + 0.5  # wake up at least twice a second: progress, peak memory, timeouts
        for w in running:
            if w.paused_since is None:
                if w.result is None and not w.connection_lost:
                    waitables.append(w.conn)
                next_deadline = min(next_deadline, w.deadline)
            waitables.append(w.process.sentinel)
        if waitables:
            wait(waitables, timeout=max(0.0, next_deadline - now))

    def _drain(self, w: _Worker) -> None:
        """Read every complete message the worker has sent (never from a paused worker: it may be mid-message)."""
        while w.paused_since is None and w.result is None and not w.connection_lost:
            try:
                if not w.conn.poll():
                    return
                message = w.conn.recv()
            except (EOFError, OSError):
                w.connection_lost = True
                return
            except Exception as exc:
                w.unreadable = f"{type(exc).__name__}: {exc}"
                continue
            kind = message[0]
            if kind == "ready":
                w.ready = True
                w.deadline = time.monotonic() + self.timeout
            elif kind == "facts":
                w.facts = message[1]
            elif kind == "progress":
                w.stage = message[1]
            elif kind == "turn":
                self.turns.waiting.append(w)
            elif kind == "turn-over":
                if self.turns.holder is w:
                    self.turns.holder = None
                    w.turns[-1] = (w.turns[-1][0], time.time())
            else:
                w.result = message
                w.closing_since = time.monotonic()
                w.seconds = w.closing_since - w.started

    def _watch(self, w: _Worker) -> None:
        if w.process.pid is not None and w.process.exitcode is None:
            peak = _peak_rss_mb(w.process.pid)
            if peak is not None:
                w.peak_rss_mb = max(peak, w.peak_rss_mb or 0.0)
        now = time.monotonic()
        if w.result is None and w.paused_since is None and now > w.deadline and w.process.exitcode is None:
            w.timed_out = True
            w.seconds = now - w.started
            if worker.STACK_SIGNAL is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.process.pid, worker.STACK_SIGNAL)  # faulthandler writes where the check is stuck
                w.process.join(STACK_WAIT)
            self._kill(w)
        elif w.closing_since is not None and now - w.closing_since > EXIT_GRACE and w.process.exitcode is None:
            self._kill(w)  # it sent its result but does not exit (a thread the script left running)

    def _finished(self, w: _Worker) -> bool:
        if w.process.exitcode is None:
            return False
        self._drain(w)  # a result sent just before exiting is still in the pipe
        w.process.join()
        if self.turns.holder is w:  # it died measuring
            self.turns.holder = None
            w.turns[-1] = (w.turns[-1][0], time.time())
        if w in self.turns.waiting:
            self.turns.waiting.remove(w)
        if not w.seconds:
            w.seconds = time.monotonic() - w.started
        return True

    def _kill(self, w: _Worker) -> None:
        if w.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                _signal_group(w.process.pid, getattr(signal, "SIGKILL", signal.SIGTERM))  # also ends a paused one
            w.process.join(5.0)
        w.conn.close()
        w.connection_lost = True  # a process slow to die (gigabytes to free) is waited for by its sentinel only

    # ------------------------------------------------------------------------------------------- taking turns

    def _pass_turns(self, running: list[_Worker]) -> None:
        """Give the machine to the next worker that asked for it, once the others are paused; resume them all when
        nobody measures."""
        turns = self.turns
        while turns.holder is None and turns.waiting:
            candidate = turns.waiting.popleft()
            if candidate not in running or candidate.process.exitcode is not None:
                continue
            for w in running:
                if w is not candidate and w.closing_since is None and w.process.exitcode is None:
                    self._pause(w)
            self._resume(candidate)
            try:
                candidate.conn.send(("go",))
            except OSError:
                continue
            turns.holder = candidate
            candidate.turns.append((time.time(), time.time()))
        if turns.holder is None:
            for w in running:
                self._resume(w)

    def _pause(self, w: _Worker) -> None:
        if w.paused_since is None and CAN_PAUSE:
            with contextlib.suppress(ProcessLookupError):
                _signal_group(w.process.pid, signal.SIGSTOP)
                _wait_until_stopped(w.process.pid)
                w.paused_since = time.monotonic()

    def _resume(self, w: _Worker) -> None:
        if w.paused_since is not None:
            with contextlib.suppress(ProcessLookupError):
                _signal_group(w.process.pid, signal.SIGCONT)
            w.deadline += time.monotonic() - w.paused_since  # paused time does not count against the timeout
            w.paused_since = None

    # ------------------------------------------------------------------------------------------------ outcomes

    def _outcome(self, w: _Worker) -> Outcome:
        stdout = postmortem.read_capture(w.folder / worker.STDOUT_FILE)
        stderr = postmortem.read_capture(w.folder / worker.STDERR_FILE)
        stack_text = postmortem.read_capture(w.folder / worker.STACK_FILE)
        location, frames = postmortem.locate(stack_text, w.facts.target.file if w.facts is not None else None)
        outcome, crash = self._ending(w, location)
        if outcome.status in (COULD_NOT_CHECK, NO_MODEL):
            return outcome  # bad input: one line, no report
        info: dict[str, Any] = {
            "status": outcome.status,
            "reason": outcome.reason,
            "seconds": round(w.seconds, 2),
            "peak_memory_mb": round(w.peak_rss_mb, 1) if w.peak_rss_mb else None,
            "exit_code": w.process.exitcode,
            "measured_alone": bool(w.turns) or None,  # True: other workers were paused while this one measured
        }
        if outcome.status != CHECKED:
            location = location or postmortem.location_of(crash)
            info.update(stage=w.stage, where=_location_dict(location), stack=frames)
            outcome.debug = "\n".join(part for part in (outcome.debug, stack_text.strip(), stderr.strip()) if part)
            if w.facts is None:
                return outcome  # it died before telling anything
            outcome.report = postmortem.partial_report(w.facts, self.options, outcome.reason or "", w.stage, crash)
        report = outcome.report
        assert report is not None
        target = report.facts.target
        if stdout.strip():
            target.user_stdout += f"\n[qdoctor: written to the process's stdout by native code or os.write]\n{stdout}"
        if stderr.strip():
            target.user_stderr += f"\n[qdoctor: written to the process's stderr]\n{stderr}"
        if w.turns:
            report.notes.append(measured_alone_note(self.jobs, paused=CAN_PAUSE))
        report.extras["worker"] = info
        outcome.turns = w.turns
        return outcome

    def _ending(self, w: _Worker, location: Any) -> tuple[Outcome, Any]:
        """How the check ended, from the worker's last message or its exit code; and the crash fact it implies."""
        spec, stage, result = w.planned.spec, w.stage, w.result or (None,)
        kind = result[0]
        where = postmortem.where_text(location)
        if kind == "done":
            return Outcome(spec, CHECKED, report=result[1], seconds=w.seconds), None
        if kind == "could-not-check":
            status = NO_MODEL if (result[2] and w.planned.from_directory) else COULD_NOT_CHECK
            return Outcome(spec, status, reason=result[1], seconds=w.seconds), None
        if kind == "exit":
            code, crash = result[1], result[2]
            crash.message = f"sys.exit({code!r}) called by the checked code"
            crash.phase = "load" if stage.startswith("loading") else "run"
            where = postmortem.where_text(postmortem.location_of(crash))
            reason = f"the checked code called sys.exit({code!r}){where} (stage: {stage})"
            return Outcome(spec, EXITED, reason=reason, seconds=w.seconds), crash
        if kind == "failed":
            reason = f"qdoctor failed: {result[1]} (stage: {stage}; rerun with --debug for the traceback)"
            return Outcome(spec, INTERNAL_ERROR, reason=reason, debug=result[2], seconds=w.seconds), None
        if w.unreadable is not None:
            reason = f"qdoctor could not read its worker's result: {w.unreadable} (stage: {stage})"
            return Outcome(spec, INTERNAL_ERROR, reason=reason, seconds=w.seconds), None
        if w.timed_out:
            reason = f"timed out after {self.timeout:g} s{where} (stage: {stage})"
            return Outcome(spec, TIMED_OUT, reason=reason, seconds=w.seconds), None
        code = w.process.exitcode
        if not w.ready:
            reason = f"the worker process could not start (exit code {code}); rerun with --debug"
            return Outcome(spec, INTERNAL_ERROR, reason=reason, seconds=w.seconds), None
        what = postmortem.describe_death(code, w.peak_rss_mb)
        reason = f"the worker process {what}{where} (stage: {stage})"
        if code is not None and code < 0:
            crash = postmortem.crash_of_death(postmortem.signal_name(code), what, stage, location)
            return Outcome(spec, CRASHED, reason=reason, seconds=w.seconds), crash
        return Outcome(spec, EXITED, reason=reason, seconds=w.seconds), None


def _location_dict(location: Any) -> dict[str, Any] | None:
    if location is None:
        return None
    return {"file": display_path(location.file), "line": location.line, "code": location.code}


def check_targets(
    arguments: list[str],
    options: Any,
    jobs: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    on_progress: Callable[[int, int, list[tuple[str, str]]], None] | None = None,
) -> list[Outcome]:
    """Check every target (files, directories of model files, package.module:attribute), each in its own process."""
    return Runner(options, jobs, timeout, on_progress).run(expand_targets(arguments))
