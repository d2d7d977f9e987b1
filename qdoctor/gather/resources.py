"""The memory a check uses: a sampler of the process's resident set, with the peak of each phase.

One monitor runs per check (``monitoring()``); the phases of gathering and verification mark themselves with
``phase(name)``, which does nothing when no monitor runs (qdoctor.api in a caller's process, tests). The sampler
reads /proc/self/statm (Linux); elsewhere the process's lifetime peak (``resource.getrusage``) stands in.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from qdoctor.facts.resources import Resources

SAMPLE_EVERY_S = 0.02
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    """The resident set of this process now (bytes); its lifetime peak where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return lifetime_peak_rss_bytes()


def lifetime_peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if os.uname().sysname == "Darwin" else 1024)


class RssMonitor:
    """Samples the resident set on a daemon thread; ``phase(name)`` attributes the peak seen while it runs."""

    def __init__(self, every_s: float = SAMPLE_EVERY_S) -> None:
        self.every_s = every_s
        self.start_bytes = current_rss_bytes()
        self.peak_bytes = self.start_bytes
        self.phase_peaks: dict[str, int] = {}
        self._phases: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, name="qdoctor-rss", daemon=True)

    def start(self) -> RssMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self.sample()

    def sample(self) -> None:
        rss = current_rss_bytes()
        with self._lock:
            self.peak_bytes = max(self.peak_bytes, rss)
            for name in self._phases:
                self.phase_peaks[name] = max(self.phase_peaks.get(name, 0), rss)

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self._lock:
            self._phases.append(name)
        self.sample()
        try:
            yield
        finally:
            self.sample()
            with self._lock:
                self._phases.remove(name)

    def resources(self, float_model_bytes: int | None, subject_model_bytes: int | None) -> Resources:
        self.sample()
        return Resources(
            peak_rss_bytes=self.peak_bytes,
            start_rss_bytes=self.start_bytes,
            float_model_bytes=float_model_bytes,
            subject_model_bytes=subject_model_bytes,
            sampled_every_s=self.every_s,
            phase_peak_rss_bytes=dict(self.phase_peaks),
        )


_active: list[RssMonitor] = []


@contextlib.contextmanager
def monitoring() -> Iterator[RssMonitor]:
    """Sample this process's memory while the block runs (nested calls share the outer monitor)."""
    if _active:
        yield _active[-1]
        return
    monitor = RssMonitor().start()
    _active.append(monitor)
    try:
        yield monitor
    finally:
        _active.remove(monitor)
        monitor.stop()


def active() -> RssMonitor | None:
    return _active[-1] if _active else None


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Attribute the memory peak of this block to ``name`` (nothing happens when no monitor runs)."""
    monitor = active()
    if monitor is None:
        yield
        return
    with monitor.phase(name):
        yield


def model_bytes(model: Any) -> int | None:
    """Bytes of a module's parameters and buffers, each storage counted once (tied weights, views); tensor
    subclasses (torchao's quantized weights) counted by their inner tensors. None when ``model`` is not a module."""
    import torch
    from torch import nn

    if not isinstance(model, nn.Module):
        return None
    seen: set[tuple[int, int]] = set()
    total = 0

    def count(t: torch.Tensor) -> None:
        nonlocal total
        if type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "__tensor_flatten__"):
            names, _ = t.__tensor_flatten__()
            for name in names:
                inner = getattr(t, name)
                if isinstance(inner, torch.Tensor):
                    count(inner)
            return
        if t.is_meta:
            return
        try:
            storage = t.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            size = storage.nbytes()
        except (RuntimeError, NotImplementedError):  # quantized or opaque tensors
            key, size = (id(t), 0), t.numel() * t.element_size()
        if key not in seen:
            seen.add(key)
            total += size

    for tensor in [*model.parameters(), *model.buffers()]:
        count(tensor)
    # packed int8 weights of torch.ao quantized modules live in their packed params, not in parameters()
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        weight_bias = getattr(packed, "_weight_bias", None)
        if callable(weight_bias):
            try:
                for t in weight_bias():
                    if isinstance(t, torch.Tensor):
                        count(t)
            except (RuntimeError, AttributeError):
                continue
    return total
