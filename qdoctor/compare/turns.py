"""Time several models in turns, so that a change in machine load falls on all of them alike.

Timing one recipe after another lets a burst of other work (a shared CI runner, a colleague's job) land on one
recipe only, and a speedup is a ratio of two timings: measured on this project's shared 2-core machine, ResNet-50
fp32 timed alone swung between 77 ms and 2.1 s per call from one minute to the next. Here every model is timed in
ROUNDS rounds, a slice of its time budget per round, and its blocks from all rounds are merged into one
torch.utils.benchmark measurement (median and IQR), exactly as qdoctor.gather.timing does for a single model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from qdoctor.facts import Timing
from qdoctor.gather.timing import MIN_BLOCKS, _quiet_benchmark_import, block_size, timing_of

ROUNDS = 5


@dataclass
class Contender:
    key: str
    run: Callable[[], Any]  # one forward pass
    context: Callable[[], AbstractContextManager[Any]]  # what must be in force while it runs (its engine, ...)
    timer: Any = None
    number: int = 1
    single_s: float = 0.0
    blocks: list[Any] = field(default_factory=list)
    error: BaseException | None = None


def time_in_turns(
    contenders: list[Contender], min_run_time: float, rounds: int = ROUNDS
) -> dict[str, Timing | BaseException]:
    """Median latency of each contender's ``run()``, timed in turns; an exception instead for one that raised."""
    benchmark = _quiet_benchmark_import()
    threads = torch.get_num_threads()
    for c in contenders:
        try:
            with c.context():
                c.run()  # warm-up: lazy initialisation, weight packing
                c.timer = benchmark.Timer(stmt="run()", globals={"run": c.run}, num_threads=threads)
                c.single_s = c.timer.timeit(1).median
            c.number = block_size(c.single_s)
        except Exception as exc:
            c.error = exc
    slice_s = min_run_time / rounds
    blocks_per_round = math.ceil(MIN_BLOCKS / rounds)
    for _ in range(rounds):
        for c in contenders:
            if c.error is not None:
                continue
            spent, count = 0.0, 0
            try:
                with c.context():
                    while spent < slice_s or count < blocks_per_round:
                        block = c.timer.timeit(c.number)
                        c.blocks.append(block)
                        spent += block.median * c.number
                        count += 1
                        if spent > max(5 * slice_s, 30 * c.single_s / rounds) and count >= blocks_per_round:
                            break  # the machine got much slower than the first call said: keep the turn short
            except Exception as exc:
                c.error = exc
    return {c.key: c.error if c.error is not None else timing_of(c.blocks, c.number, threads) for c in contenders}
