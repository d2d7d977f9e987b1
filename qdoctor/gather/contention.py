"""Is someone else using the cores? Contention before and while measuring, and where to measure instead.

With as many intra-op threads as cores and one more runnable process, every OpenMP parallel region waits for a
descheduled thread: measured so on a shared 2-core machine, fp32 (oneDNN, MKL) slowed far more than int8 and a
model 3.5x slower in int8 was reported 8x faster. So before timing anything qdoctor looks at how busy the CPUs it
may use are (per-CPU busy time from /proc/stat minus this process's own, from /proc/self/stat, which sums every
thread of the process), waits a bounded time for quiet, and otherwise measures on the free cores only (fewer
threads, pinned there), or on one thread when no core is free (one thread never waits for a descheduled sibling).
While measuring it watches the CPUs it measures on; contention there is recorded on every timing, and a ratio taken
under it gets a wider interval (qdoctor.gather.rounds), judged like any other when it clears its threshold.

Linux only; elsewhere (no /proc) no contention is ever seen and nothing changes.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from qdoctor.facts import Contention

BUSY_CORE = 0.5  # other processes using at least half a core count as a busy core
CONTENDED_DURING = 0.3  # cores' worth of others' time on the measured CPUs while measuring that counts as contention
SAMPLE_S = 0.15  # a look at the machine before measuring, when no recent one exists
POLL_S = 0.25  # while waiting for quiet
WAIT_FOR_QUIET_S = 2.0  # at most this long, in all, per process (later measurements do not wait again)
RECENT_S = 3.0  # an observation this recent stands for "before measuring"

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class CpuSample:
    """Cumulative CPU ticks: busy per CPU, and this process's own (all its threads)."""

    at: float
    busy: dict[int, int] = field(default_factory=dict)
    own: int = 0


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def sample() -> CpuSample | None:
    """Now: /proc/stat per-CPU busy ticks and /proc/self/stat utime+stime; None without /proc."""
    stat, own = _read("/proc/stat"), _read("/proc/self/stat")
    if stat is None or own is None:
        return None
    busy: dict[int, int] = {}
    for line in stat.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *values = line.split()
        ticks = [int(v) for v in values]
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        busy[int(name[3:])] = sum(ticks[:8]) - idle
    # the command name (field 2) may hold spaces: the fields after its closing parenthesis start at field 3
    rest = own[own.rindex(")") + 2 :].split()
    return CpuSample(at=time.monotonic(), busy=busy, own=int(rest[11]) + int(rest[12]))


def others_busy(start: CpuSample, end: CpuSample, cpus: set[int] | None = None) -> float:
    """Other processes' CPU time between two samples, in cores, on ``cpus`` (default: all allowed ones). This
    process's own time is subtracted whole, which is exact when it ran only on ``cpus`` (it was pinned there)."""
    wall = end.at - start.at
    if wall <= 0:
        return 0.0
    on = cpus if cpus is not None else allowed_cpus()
    ticks = sum(end.busy.get(c, 0) - start.busy.get(c, 0) for c in on) - (end.own - start.own)
    return max(0.0, ticks / _TICKS / wall)


def per_cpu_busy(start: CpuSample, end: CpuSample) -> dict[int, float]:
    wall = max(end.at - start.at, 1e-9)
    return {c: (end.busy.get(c, 0) - start.busy.get(c, 0)) / _TICKS / wall for c in end.busy}


def allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def busy_count(cores: float, allowed: int) -> int:
    """Other processes' time in cores -> how many of the allowed cores they keep busy."""
    if cores < BUSY_CORE:
        return 0
    return min(allowed, max(1, math.floor(cores + 0.5)))


@dataclass
class _Memory:
    """The last look at the machine (sample pairs are taken while measuring too), and the waiting budget left."""

    last: tuple[float, float, dict[int, float]] | None = None  # (monotonic time, others in cores, per-CPU busy)
    wait_left: float = WAIT_FOR_QUIET_S


_memory = _Memory()


def remember(start: CpuSample, end: CpuSample) -> None:
    _memory.last = (end.at, others_busy(start, end), per_cpu_busy(start, end))


def _look(seconds: float) -> tuple[float, dict[int, float]] | None:
    start = sample()
    if start is None:
        return None
    time.sleep(seconds)
    end = sample()
    if end is None:
        return None
    remember(start, end)
    return others_busy(start, end), per_cpu_busy(start, end)


def before_measuring() -> tuple[float, dict[int, float], float]:
    """Others' load in cores and per CPU just before measuring, after waiting (bounded) for quiet; and the wait."""
    last = _memory.last
    if last is not None and time.monotonic() - last[0] < RECENT_S:
        others, per_cpu = last[1], last[2]
    else:
        looked = _look(SAMPLE_S)
        if looked is None:
            return 0.0, {}, 0.0
        others, per_cpu = looked
    waited = 0.0
    while others >= BUSY_CORE and _memory.wait_left > 0:
        step = min(POLL_S, _memory.wait_left)
        _memory.wait_left -= step
        waited += step
        looked = _look(step)
        if looked is None:
            break
        others, per_cpu = looked
    return others, per_cpu, waited


@dataclass
class Conditions:
    """Where and how a measurement runs: threads and CPUs chosen from the contention seen before it."""

    threads_requested: int
    threads_used: int
    cpus: set[int]
    pinned: bool
    contention: Contention


def plan(threads_requested: int) -> Conditions:
    """Look at the machine (waiting a bounded time for quiet) and choose threads and CPUs for a measurement."""
    allowed = allowed_cpus()
    others, per_cpu, waited = before_measuring()
    busy = busy_count(others, len(allowed))
    free = len(allowed) - busy
    cpus, pinned = allowed, False
    threads = threads_requested
    if busy:
        threads = max(1, min(threads_requested, free))
        if free >= 1 and free < len(allowed):
            cpus = set(sorted(allowed, key=lambda c: (per_cpu.get(c, 0.0), c))[:threads])
            pinned = True
    if not busy:
        action = f"measured on {_n(threads, 'thread')}; no other process was using the {_n(len(allowed), 'core')}"
    elif free >= 1:
        where = f", pinned to CPU {', '.join(map(str, sorted(cpus)))}" if pinned else ""
        action = f"measured on {_n(threads, 'thread')}{where}: {busy} of {_n(len(allowed), 'core')} {_was(busy)} busy"
    else:
        action = (
            f"measured on {_n(threads, 'thread')}: all {_n(len(allowed), 'core')} {_was(busy)} busy with other "
            "processes"
        )
    if waited:
        action += f" (waited {waited:.1f} s for quiet)"
    contention = Contention(
        cores_allowed=len(allowed),
        load_average=round(load_average(), 2),
        busy_cores_before=round(others, 2),
        busy_cores_during=0.0,
        threads_requested=threads_requested,
        threads_used=threads,
        cpus_used=sorted(cpus),
        waited_s=round(waited, 2),
        action=action,
    )
    return Conditions(threads_requested, threads, cpus, pinned, contention)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _was(count: int) -> str:
    return "was" if count == 1 else "were"


def _threads_of_process() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


@contextlib.contextmanager
def pinned_to(cpus: set[int]) -> Iterator[None]:
    """Every thread of this process (OpenMP's workers too) on ``cpus``; each thread's affinity restored after."""
    saved: dict[int, set[int]] = {}
    for tid in _threads_of_process():
        try:
            saved[tid] = set(os.sched_getaffinity(tid))
            os.sched_setaffinity(tid, cpus)
        except OSError:  # the thread ended meanwhile
            pass
    try:
        yield
    finally:
        for tid, previous in saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, previous)


@contextlib.contextmanager
def applied(conditions: Conditions) -> Iterator[None]:
    """Run with the planned thread count (and CPUs); the user's thread count and affinity restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(conditions.threads_used)
    try:
        if conditions.pinned and hasattr(os, "sched_setaffinity"):
            with pinned_to(conditions.cpus):
                yield
        else:
            yield
    finally:
        torch.set_num_threads(previous)


class Watch:
    """Others' CPU time on the measured CPUs over a measurement."""

    def __init__(self, conditions: Conditions) -> None:
        self.conditions = conditions
        self.start = sample()

    def stop(self) -> Contention:
        end = sample()
        contention = self.conditions.contention
        if self.start is None or end is None:
            return contention
        cpus = self.conditions.cpus if self.conditions.pinned else None
        during = others_busy(self.start, end, cpus)
        remember(self.start, end)
        contended = during >= CONTENDED_DURING
        action = contention.action
        if contended:
            action += f"; other processes took {during:.1f} core(s) of it while measuring"
        return Contention(
            **{
                **contention.__dict__,
                "busy_cores_during": round(during, 2),
                "contended": contended,
                "action": action,
            }
        )
