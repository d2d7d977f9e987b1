"""The core of `qdoctor check`: load, gather facts once, run the rules, return a Report.

Never prints and never exits: the CLI decides what to show and which exit code to use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from qdoctor import __version__
from qdoctor.gather import GatherOptions, gather_facts, preserved_torch_state
from qdoctor.loader import load_target
from qdoctor.registry import run_rules
from qdoctor.report import Report


@dataclass
class CheckOptions:
    gather: GatherOptions = field(default_factory=GatherOptions)
    select: list[str] | None = None
    ignore: list[str] | None = None
    per_module_ignores: dict[str, list[str]] | None = None  # module glob -> rule codes/prefixes ([tool.qdoctor])
    verify: bool = True  # apply each finding's fix to a copy and measure it (qdoctor.prescribe)
    verify_bench_time: float | None = None  # seconds per counterfactual; None: qdoctor.prescribe's default
    save_fixed: str | None = None  # write the "fix all" model here (part of verification)


def notes_for(facts) -> list[str]:  # type: ignore[no-untyped-def]
    notes = []
    target = facts.target
    if target.inputs_inferred:
        notes.append(f"inputs: {target.inputs_inferred}")
    if target.float_derived:
        notes.append(f"float baseline: {target.float_derived}")
    if target.float_name is None:
        notes.append(
            "no float baseline found (define `float_model` or `build_float_model()`): speedup and SQNR not measured"
        )
    if target.load_crash is not None:
        c = target.load_crash
        where = f" at {c.file}:{c.line}" if c.line else ""
        notes.append(f"the script raised {c.type}{where}; the globals defined before it were used")
    if facts.modules is not None and not facts.is_quantized:
        notes.append(
            "the model is not quantized (no quantized modules, observers, fake-quant or qconfig): nothing to "
            "diagnose. To choose a quantization recipe, run `qdoctor compare` on this file."
        )
    return notes


def check(spec: str, options: CheckOptions | None = None, progress: Callable[[str], None] = lambda _: None) -> Report:
    """Check one target. Raises qdoctor.errors.TargetError when it cannot be checked at all."""
    options = options or CheckOptions()
    with preserved_torch_state():
        progress(f"loading {spec}")
        loaded = load_target(spec)
        facts = gather_facts(loaded, options.gather, progress)
        if facts.modules is not None and not facts.is_quantized:
            findings, skipped = [], []
        else:
            findings, skipped = run_rules(facts, options.select, options.ignore, options.per_module_ignores)
        report = Report(
            facts=facts, findings=findings, skipped=skipped, notes=notes_for(facts), qdoctor_version=__version__
        )
        if options.verify:
            report.extras.update(verify_fixes(loaded, facts, report.findings, options, progress))
    return report


def verify_fixes(loaded, facts, findings, options: CheckOptions, progress: Callable[[str], None]) -> dict:  # type: ignore[no-untyped-def]
    """The verified-prescriptions stage (qdoctor.prescribe): fills each finding's ``verified``, returns the extras."""
    from qdoctor.prescribe import VERIFY_BENCH_TIME, PrescribeOptions, prescribe

    return prescribe(
        loaded,
        facts,
        findings,
        PrescribeOptions(
            bench=options.gather.bench,
            bench_time=min(options.verify_bench_time or VERIFY_BENCH_TIME, options.gather.bench_time),
            save_fixed=options.save_fixed,
        ),
        progress,
    )
