"""The core of `qdoctor check`: load, gather facts once, run the rules, return a Report.

Never prints and never exits: the CLI decides what to show and which exit code to use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from qdoctor import __version__
from qdoctor.flowfailures import FLOW_FAILURE_RULES
from qdoctor.gather import GatherOptions, gather_facts, preserved_torch_state
from qdoctor.loader import load_target
from qdoctor.registry import run_rules, selected
from qdoctor.report import Report


@dataclass
class CheckOptions:
    gather: GatherOptions = field(default_factory=GatherOptions)
    select: list[str] | None = None
    ignore: list[str] | None = None
    trust: bool = False  # a pickled full model as TARGET may be unpickled (it runs code from the file)


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
    if facts.flow is not None:
        notes.extend(f"{facts.flow.flow}: {note}" for note in facts.flow.notes)
    if facts.modules is not None and not facts.is_quantized and not _flow_failed(facts):
        notes.append(
            "the model is not quantized (no quantized modules, observers, fake-quant or qconfig): nothing to "
            "diagnose. To choose a quantization recipe, run `qdoctor compare` on this file."
        )
    return notes


def _flow_failed(facts) -> bool:  # type: ignore[no-untyped-def]
    """A quantization flow step raised (export, prepare_pt2e, an import that moved): the model the script meant to
    quantize stayed float, and the rules must still run to say why."""
    return facts.flow is not None and facts.flow.failure is not None


def check(spec: str, options: CheckOptions | None = None, progress: Callable[[str], None] = lambda _: None) -> Report:
    """Check one target. Raises qdoctor.errors.TargetError when it cannot be checked at all."""
    options = options or CheckOptions()
    with preserved_torch_state():
        progress(f"loading {spec}")
        loaded = load_target(spec, trust=options.trust)
        facts = gather_facts(loaded, options.gather, progress)
        if facts.modules is not None and not facts.is_quantized and _flow_failed(facts):
            # the flow raised before anything was quantized: only its failure is worth reporting on the float model
            wanted = [code for code in FLOW_FAILURE_RULES if selected(code, options.select, options.ignore)]
            findings, skipped = run_rules(facts, wanted, options.ignore) if wanted else ([], [])
        elif facts.modules is not None and not facts.is_quantized:
            findings, skipped = [], []
        else:
            findings, skipped = run_rules(facts, options.select, options.ignore)
    return Report(
        facts=facts, findings=findings, skipped=skipped, notes=notes_for(facts), qdoctor_version=__version__
    )
