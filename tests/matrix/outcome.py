"""Checking one cell of the matrix with qdoctor, and judging the report against the cell's expectations. Shared by
tests/matrix/ (the CI subset) and bench/matrix.py (all of it)."""

from __future__ import annotations

import fnmatch
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .generate import EXPECTATIONS, Cell


@dataclass
class Outcome:
    codes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # codes of error-level findings
    warnings: list[str] = field(default_factory=list)  # codes of warning-level findings
    crashed: str | None = None  # the script's or the model's crash, first line
    subject: str | None = None
    float_baseline: str | None = None
    inputs_origin: str | None = None
    could_not_check: str | None = None  # qdoctor exited 2 (TargetError)
    messages: dict[str, str] = field(default_factory=dict)  # code -> first message, for the failure list
    speedup: str | None = None  # int8 vs float, with its interval, when timed
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_cell(cell: Cell, folder: Path, bench: bool = False, profile: bool | None = None) -> Outcome:
    """Write the cell's script into ``folder`` and check it in this process (short timings; no verified fixes)."""
    profile = cell.fault.needs_profile or bench if profile is None else profile
    return check_script(cell.write(folder), bench=bench, profile=profile)


def check_script(path: Path, bench: bool = False, profile: bool = False) -> Outcome:
    """Check one script in this process as the matrix and the sweep do: no verified fixes, short timings, per-layer
    numerics only with timing."""
    from qdoctor.errors import TargetError
    from qdoctor.gather import GatherOptions
    from qdoctor.run.check import CheckOptions, check

    options = CheckOptions(
        gather=GatherOptions(bench=bench, bench_time=0.1, profile=profile, profile_budget=0.1, layer_numerics=bench),
        verify=False,
    )
    started = time.perf_counter()
    try:
        report = check(str(path), options)
    except TargetError as error:
        return Outcome(could_not_check=str(error).splitlines()[0], seconds=time.perf_counter() - started)
    facts = report.facts
    crash = facts.target.load_crash or (facts.trace.crash if facts.trace else None)
    ratio = facts.benchmark.speedup_ratio if facts.benchmark is not None else None
    messages: dict[str, str] = {}
    for f in report.findings:
        messages.setdefault(f.rule, f.message.splitlines()[0][:300])
    return Outcome(
        codes=sorted({f.rule for f in report.findings}),
        errors=sorted({f.rule for f in report.findings if f.severity.value == "error"}),
        warnings=sorted({f.rule for f in report.findings if f.severity.value == "warning"}),
        crashed=None if crash is None else f"{crash.type}: {crash.message.splitlines()[0][:200]}",
        subject=facts.target.subject_name,
        float_baseline=facts.target.float_name,
        inputs_origin=facts.target.inputs_origin,
        messages=messages,
        speedup=None if ratio is None else ratio.text(),
        seconds=time.perf_counter() - started,
    )


def problems(cell: Cell, outcome: Outcome) -> list[str]:
    """What is wrong with the report of ``cell``: empty when the cell passes."""
    if outcome.could_not_check:
        return [f"could not check: {outcome.could_not_check}"]
    out = [f"missed {code}" for code in cell.expect if code not in outcome.codes]
    out += [f"invented {code}: {outcome.messages.get(code, '')}" for code in cell.absent if code in outcome.codes]
    if cell.healthy:
        out += [f"error finding {code}: {outcome.messages.get(code, '')}" for code in outcome.errors]
        if outcome.crashed:
            out.append(f"crashed: {outcome.crashed}")
    return out


def pending() -> dict[str, str]:
    """Cells that fail today because of work pending elsewhere (a cell id or an fnmatch pattern of cell ids -> the
    reason), from expectations.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return dict(tomllib.loads(EXPECTATIONS.read_text(encoding="utf-8")).get("pending", {}))


def pending_reason(cell_id: str, known: dict[str, str] | None = None) -> str | None:
    """Why ``cell_id`` is expected to fail today, or None when it must pass."""
    known = pending() if known is None else known
    return next((why for pattern, why in known.items() if fnmatch.fnmatchcase(cell_id, pattern)), None)


CRASH = "crash"  # a recipe's known: the message of a crash the recipe itself raises on this stack (without qdoctor)


def sweep_problems(known: dict[str, str], outcome: Outcome) -> list[str]:
    """What is wrong with the report of a healthy recipe: any warning or error finding that is not one of the
    recipe's measured true causes (``known``), a crash, or no report at all."""
    if outcome.could_not_check:
        return [f"could not check: {outcome.could_not_check}"]
    out = [
        f"{code}: {outcome.messages.get(code, '')}"
        for code in sorted({*outcome.errors, *outcome.warnings})
        if code not in known
    ]
    if outcome.crashed and not (CRASH in known and known[CRASH] in outcome.crashed):
        out.append(f"crashed: {outcome.crashed}")
    return out


def sweep_pending() -> dict[str, str]:
    """Sweep recipes that fail today because of work pending elsewhere (recipe name -> reason)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return dict(tomllib.loads(EXPECTATIONS.read_text(encoding="utf-8")).get("sweep_pending", {}))
