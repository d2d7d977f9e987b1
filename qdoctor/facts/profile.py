"""What the profiler measured (no torch): time by category, by op and by module, per profiled run."""

from __future__ import annotations

from dataclasses import dataclass, field

from qdoctor.facts.measurement import Timing


@dataclass
class CategoryTime:
    category: str
    total_ms: float  # self time summed over the profiled runs, divided by the number of runs
    share: float  # of the profiled total, 0..1


@dataclass
class OpTime:
    name: str
    category: str
    self_ms: float  # per run
    calls: int  # per run


@dataclass
class ModuleTime:
    path: str
    type: str
    kind: str
    total_ms: float  # per run, inclusive of the ops inside it
    ops: list[OpTime] = field(default_factory=list)  # the ops that ran inside it, by self time (top few)
    run_ms: list[float] = field(default_factory=list)  # its time in each profiled run, in order (the spread)

    def timing(self) -> Timing | None:
        """Median and interquartile range over the profiled runs (None with fewer than 3 runs: no spread)."""
        if len(self.run_ms) < 3:
            return None
        ordered = sorted(self.run_ms)
        median = _quantile(ordered, 0.5)
        iqr = _quantile(ordered, 0.75) - _quantile(ordered, 0.25)
        return Timing(
            median_ms=median,
            iqr_ms=iqr,
            runs=len(ordered),
            number_per_run=1,
            num_threads=0,  # not recorded: profiled in the thread setting the subject was timed with
            noisy=bool(median and iqr / median > 0.10),
        )


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default)."""
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Profile:
    runs: int
    total_ms: float  # per run
    categories: list[CategoryTime]
    top_ops: list[OpTime]
    modules: list[ModuleTime]
    # the between-session sd (log scale) of a ratio of this profile's times to another profile's: the profiles of
    # the int8 and the float model are separate sessions (qdoctor.gather.rounds.process_sd; 0.0: not known)
    between_sd: float = 0.0

    def share(self, category: str) -> float:
        return next((c.share for c in self.categories if c.category == category), 0.0)

    def time_ms(self, category: str) -> float:
        return next((c.total_ms for c in self.categories if c.category == category), 0.0)

    def innermost_modules(self) -> list[ModuleTime]:
        """The profiled modules with no profiled module inside them: their times do not overlap, so they add up."""
        parents = {p for m in self.modules for p in _prefixes(m.path)}
        return [m for m in self.modules if m.path not in parents]


def _prefixes(path: str) -> list[str]:
    """ "a.b.c" -> ["a", "a.b"]: the module paths that contain this one."""
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]
