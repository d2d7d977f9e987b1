"""Which modules of the float baseline hold the computation of a module of the quantized subject (its float twins),
and their time in the float profile: pure functions of Facts shared by the rules that compare layers.

Aligned by module path: the same path, the path inside an eager QuantWrapper (``module.conv`` -> ``conv``), plus what
fusion folded into it (eager: ``conv`` + ``bn`` + ``relu`` -> ``ConvBnReLU2d`` at ``conv``, Identity at the others;
FX: the folded modules are gone from the subject).
"""

from __future__ import annotations

from qdoctor import facts as F
from qdoctor.facts import Facts, ModuleTime, Timing

# Float modules that fusion folds into the layer before them.
_FOLDED_TYPES = ("ReLU", "ReLU6", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Hardswish", "ELU", "LeakyReLU")


def summed_timing(times: list[ModuleTime]) -> Timing | None:
    """Median and spread of the summed time of several modules in each profiled run (one module: its own runs);
    None without per-run times for all of them."""
    runs = {len(t.run_ms) for t in times}
    if len(runs) != 1:
        return None
    summed = ModuleTime(times[0].path, times[0].type, times[0].kind, sum(t.total_ms for t in times))
    summed.run_ms = [sum(values) for values in zip(*(t.run_ms for t in times), strict=True)]
    return summed.timing()


def float_twins(facts: Facts, path: str) -> list[str]:
    """The float baseline's modules that hold the computation of the subject's module ``path``."""
    float_paths = [m.path for m in facts.float_modules or []]
    known = set(float_paths)
    twin = next((p for p in (path, path.removeprefix("module.")) if p in known), None)
    if twin is None:
        return []
    twins = [twin]
    subject = {m.path: m for m in facts.modules or []}
    floats = {m.path: m for m in facts.float_modules or []}
    parent = twin.rpartition(".")[0]
    prefix = path[: len(path) - len(twin)]  # "module." inside a QuantWrapper
    for follower in float_paths[float_paths.index(twin) + 1 :]:
        if follower.rpartition(".")[0] != parent or floats[follower].kind == F.CONTAINER:
            continue  # a child of the twin (a fused float module's parts) or deeper: not a sibling
        in_subject = subject.get(prefix + follower)
        folded = in_subject is None or in_subject.type == "Identity"
        if not folded or floats[follower].type not in _FOLDED_TYPES:
            break
        twins.append(follower)
    return twins
