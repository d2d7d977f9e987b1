"""Gather the facts about a loaded target, once. Each part that fails is marked unavailable with its reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qdoctor.facts import Facts

if TYPE_CHECKING:  # torch is imported where facts are gathered, so that GatherOptions is light (qdoctor.run.batch)
    from qdoctor.load.target import LoadedTarget

Progress = Callable[[str], None]
OnStage = Callable[[str, Facts], None]  # a stage begins; the facts gathered so far


@dataclass
class GatherOptions:
    bench: bool = True  # time the subject and the float baseline
    bench_time: float = 1.0  # seconds of timed runs per model (torch.utils.benchmark min_run_time)
    profile: bool = True
    profile_budget: float = 1.0  # seconds of profiled runs per model
    trace_dir: str | None = None  # also write each profiled model's Chrome trace here (torch-tb-profiler layout)
    layer_numerics: bool = True  # the error of each quantized layer (gather/layer_numerics.py)
    weights: str = "auto"  # --weights: auto (detect, gather/weights.py), trained or untrained
    deploy: str | None = None  # --deploy: lower for this runtime and time there too (qdoctor/flows/: deploy_target)


def gather_facts(
    loaded: LoadedTarget,
    options: GatherOptions,
    progress: Progress = lambda _: None,
    on_stage: OnStage | None = None,
    reuse: Facts | None = None,
) -> Facts:
    """Every fact about ``loaded``, gathered once, in stages; a stage that fails leaves its part None with the reason
    in ``facts.unavailable``. ``on_stage(message, facts)`` sees the facts so far as each stage begins.

    ``reuse``: the facts of an earlier check with the same float baseline and inputs (a treatment round): what
    depends on the float baseline alone (its modules, profile and size) is taken from there, not gathered again.
    The float baseline is still timed beside the subject: a ratio is only paired within one session."""
    from qdoctor.gather.stages import Gathering

    return Gathering(loaded, options, progress, on_stage, reuse).run()


__all__ = ["GatherOptions", "OnStage", "Progress", "gather_facts"]
