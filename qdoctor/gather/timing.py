"""Latency with torch.utils.benchmark: median and IQR over timed blocks, never a mean of wall-clock deltas."""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from qdoctor.facts import Timing
from qdoctor.gather.exclusive import exclusive_measurement

NOISY_SPREAD = 0.10
MIN_BLOCKS = 10  # IQR / median above this is flagged, as torch.utils.benchmark does


def _quiet_benchmark_import() -> Any:
    # torch.utils.benchmark imports cpp_extension, which logs a warning about CUDA on CPU-only machines.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch.utils.benchmark as benchmark

    return benchmark


def time_callable(run: Any, min_run_time: float, num_threads: int | None = None, label: str = "") -> Timing:
    """Time ``run()`` with torch.utils.benchmark.Timer: blocks of calls, median and IQR over the blocks.

    ``num_threads`` defaults to the thread count in force (Timer's own default of 1 would hide thread problems).
    Parallel checks take turns (qdoctor.gather.exclusive).
    """
    with exclusive_measurement():
        return _time_alone(run, min_run_time, num_threads, label)


def _time_alone(run: Any, min_run_time: float, num_threads: int | None, label: str) -> Timing:
    benchmark = _quiet_benchmark_import()
    threads = num_threads or torch.get_num_threads()
    run()  # warm-up: first calls pay for lazy initialisation and weight packing
    timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=threads, label=label)
    single = timer.timeit(1).median
    number = block_size(single)
    blocks: list[float] = []
    spent = 0.0
    while spent < min_run_time or len(blocks) < MIN_BLOCKS:
        block = timer.timeit(number)
        blocks.append(block)
        spent += block.median * number
        if spent > max(5 * min_run_time, 30 * single) and len(blocks) >= 3:
            break
    return timing_of(blocks, number, threads)


def block_size(single_s: float) -> int:
    """Calls per timed block: blocks of >= 5 ms keep timer overhead negligible (at least MIN_BLOCKS blocks make
    the IQR meaningful)."""
    return max(1, int(0.005 / max(single_s, 1e-7)))


def timing_of(blocks: list[Any], number: int, threads: int) -> Timing:
    """One Timing from torch.utils.benchmark Measurements of blocks of ``number`` calls: median and IQR per call."""
    benchmark = _quiet_benchmark_import()
    measurement = benchmark.Measurement.merge(blocks)[0]
    median = measurement.median * 1000.0
    iqr = measurement.iqr * 1000.0
    return Timing(
        median_ms=median,
        iqr_ms=iqr,
        runs=len(measurement.times),
        number_per_run=number,
        num_threads=threads,
        noisy=bool(median and iqr / median > NOISY_SPREAD),
    )


def time_model(model: nn.Module, inputs: tuple[Any, ...], min_run_time: float = 1.0, copy_model: bool = True) -> Timing:
    """Median latency of one forward pass of (a copy of) ``model`` on ``inputs`` under no_grad."""
    subject = copy.deepcopy(model) if copy_model else model

    def run() -> None:
        with torch.no_grad():
            subject(*inputs)

    return time_callable(run, min_run_time)
