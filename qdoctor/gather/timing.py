"""Latency: median and IQR over timed blocks, never a mean of wall-clock deltas (qdoctor.gather.rounds measures).

``time_models`` times the models being compared together, in interleaved rounds, with contention watched (their
ratios come from paired rounds); ``time_model`` / ``time_callable`` time one model alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from qdoctor.facts import Timing
from qdoctor.gather import rounds
from qdoctor.gather.rounds import NOISY_SPREAD, RoundsResult, Variant
from qdoctor.introspect.copies import runnable

__all__ = ["NOISY_SPREAD", "RoundsResult", "Variant", "model_run", "time_callable", "time_model", "time_models"]


def _quiet_benchmark_import() -> Any:
    # torch.utils.benchmark imports cpp_extension, which logs a warning about CUDA on CPU-only machines.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch.utils.benchmark as benchmark

    return benchmark


def model_run(model: nn.Module, inputs: tuple[Any, ...], copy_model: bool = True) -> Callable[[], None]:
    """One forward pass of (a copy of) ``model`` on ``inputs`` under no_grad."""
    subject = runnable(model) if copy_model else model

    def run() -> None:
        with torch.no_grad():
            subject(*inputs)

    return run


def time_models(
    variants: list[Variant],
    min_run_time: float,
    min_rounds: int = rounds.MIN_ROUNDS,
    max_rounds: int = rounds.MAX_ROUNDS,
) -> RoundsResult:
    """Time the models being compared together in interleaved rounds (``min_run_time`` seconds each, about;
    ``max_rounds`` caps a slow model's rounds: qdoctor.gather.budget)."""
    return rounds.measure(variants, min_run_time, min_rounds=min_rounds, max_rounds=max_rounds)


def time_callable(run: Any, min_run_time: float, num_threads: int | None = None, label: str = "") -> Timing:
    """Time ``run()`` alone (rounds of blocks, contention watched): median and IQR per call.

    ``num_threads`` defaults to the thread count in force (torch.utils.benchmark's default of 1 would hide thread
    problems); under contention the layer may use fewer (Timing.num_threads says how many).
    """
    timing, _ = rounds.measure_one(run, min_run_time, threads=num_threads)
    return timing


def time_model(model: nn.Module, inputs: tuple[Any, ...], min_run_time: float = 1.0, copy_model: bool = True) -> Timing:
    """Median latency of one forward pass of (a copy of) ``model`` on ``inputs`` under no_grad."""
    return time_callable(model_run(model, inputs, copy_model), min_run_time)
