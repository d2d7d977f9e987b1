"""The core of `qdoctor check`: load, gather facts once, run the rules, return a Report.

Never prints and never exits: the CLI decides what to show and which exit code to use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qdoctor import __version__
from qdoctor.diagnose.flow_causes import script_failure_text
from qdoctor.diagnose.registry import crash_rules, flow_failure_rules, run_after_fixes, run_rules
from qdoctor.errors import ScriptFailedError, TargetError
from qdoctor.facts import Facts
from qdoctor.gather import GatherOptions, OnStage, gather_facts
from qdoctor.introspect.state import preserved_torch_state
from qdoctor.load.options import LoadOptions
from qdoctor.report.language_model import language_model_note
from qdoctor.report.model import Report

if TYPE_CHECKING:  # torch-free at import: loading and findings are only named here
    from qdoctor.diagnose.findings import Finding
    from qdoctor.load.target import LoadedTarget

# Importing this module must not import torch: qdoctor.run.batch builds reports of checks that died in their worker
# process from here, in a parent process that never loads torch (see tests/test_isolation.py).


@dataclass
class CheckOptions:
    gather: GatherOptions = field(default_factory=GatherOptions)
    select: list[str] | None = None
    ignore: list[str] | None = None
    per_module_ignores: dict[str, list[str]] | None = None  # module glob -> rule codes/prefixes ([tool.qdoctor])
    verify: bool = True  # apply each finding's fix to a copy and measure it (qdoctor.prescribe)
    verify_bench_time: float | None = None  # seconds per counterfactual; None: qdoctor.prescribe's default
    save_fixed: str | None = None  # write the "fix all" model here (part of verification)
    trust: bool = False  # a pickled full model as TARGET may be unpickled (it runs code from the file)
    load: LoadOptions = field(default_factory=LoadOptions)  # keep going past errors, offline stand-ins


def notes_for(facts: Facts) -> list[str]:
    notes = []
    target = facts.target
    notes.extend(target.selection)
    if target.inputs_inferred:
        notes.append(f"inputs: {target.inputs_inferred}")
    if target.float_derived:
        notes.append(f"float baseline: {target.float_derived}")
    if target.float_name is None:
        notes.append(
            "no float baseline found (define `float_model` or `build_float_model()`): speedup and SQNR not measured"
        )
    notes.extend(script_notes(target))
    if target.stopped_lines:
        lines = ", ".join(str(line) for line in target.stopped_lines)
        notes.append(
            f"stopped the statement{'s' if len(target.stopped_lines) > 1 else ''} at line {lines} after "
            "its time budget (the script's own timing loop; qdoctor measures speed itself); the next ones still ran"
        )
    if target.script_errors:
        errors = [c for c in target.script_errors if c.follows_from is None]
        followers = [c for c in target.script_errors if c.follows_from is not None]
        lines = ", ".join(
            f"{c.line} {c.type}" + (": it read stdin, which qdoctor leaves empty" if c.type == "EOFError" else "")
            for c in errors[:12]
        ) + (", ..." if len(errors) > 12 else "")
        text = (
            f"the script ran statement by statement: {len(errors)} raised (line{'s' if len(errors) > 1 else ''} "
            f"{lines}), each reported; the statements after them still ran (--stop-on-error stops at the first)"
        )
        if followers:
            text += "; " + ", ".join(
                f"line {c.line} then raised {c.type} (a name line {c.follows_from} never bound)" for c in followers[:8]
            )
        notes.append(text)
    elif target.load_crash is not None:
        c = target.load_crash
        where = f" at {c.file}:{c.line}" if c.line else ""
        stdin = " (it read stdin, which qdoctor leaves empty)" if c.type == "EOFError" else ""
        notes.append(f"the script raised {c.type}{where}{stdin}; the globals defined before it were used")
    if facts.flow is not None:
        notes.extend(f"{facts.flow.flow}: {note}" for note in facts.flow.notes)
    language_model = language_model_note(facts)
    if language_model is not None:
        notes.append(language_model)
    if facts.modules is not None and not facts.is_quantized and not _flow_failed(facts):
        notes.append(
            "the model is not quantized (no quantized modules, observers, fake-quant or qconfig): nothing to "
            "diagnose. To choose a quantization recipe, run `qdoctor compare` on this file."
        )
    return notes


SPEED_NOT_ACCURACY = (
    "numbers measured with stand-ins are valid for speed (same architecture, same shapes), not for accuracy: "
    "SQNR and evaluate() come from random weights and random data"
)


def script_notes(target: Any) -> list[str]:
    """What the report ran of a bug report, and the offline stand-ins used (shared with `qdoctor compare`)."""
    from qdoctor.report.render.common import STAND_IN_MARK

    notes = []
    text = target.report_text
    if text is not None:
        from qdoctor.load.report_text import describe_ranges

        source = "standard input" if text.stdin else "the report"
        how = "its fenced Python blocks" if text.kind == "markdown" else "its runs of lines that parse as Python"
        notes.append(f"ran {how}: lines {describe_ranges(text.ran)} of {source}")
        notes.extend(f"not run: {skipped}" for skipped in text.skipped)
    for sub in target.substitutions:
        where = f" (line {sub.line})" if sub.line else ""
        notes.append(f"stand-in{where}: {sub.requested} -> {sub.instead}")
    if target.substitutions:
        notes.append(f"{STAND_IN_MARK} {SPEED_NOT_ACCURACY} (--no-stand-ins runs the script as written)")
    return notes


def loaded_facts(loaded: LoadedTarget) -> Facts:
    """The facts known once the script has run: the target and the machine (gather_facts adds the rest)."""
    from qdoctor.gather.environment import gather_environment

    return Facts(target=loaded.target, environment=gather_environment(loaded.user_engine, loaded.user_num_threads))


def _flow_failed(facts: Facts) -> bool:
    """A quantization flow step raised (export, prepare_pt2e, an import that moved): the model the script meant to
    quantize stayed float, and the rules must still run to say why."""
    return bool(flow_failure_rules(facts))


def build_report(facts: Facts, options: CheckOptions) -> Report:
    """Run the rules over ``facts`` (complete, or partial when a check died part-way) and assemble the Report."""
    if facts.modules is not None and not facts.is_quantized:
        # Nothing was quantized. When a flow step raised first, only the rules that own its cause run (the others
        # would only describe the float model); else there is nothing to diagnose, except a crash: the report shows
        # it, so the rules that report crashes run (its owners, else QD014).
        owners = flow_failure_rules(facts)
        owners += [r for r in crash_rules(facts) if r not in owners]
        findings, skipped = run_rules(facts, options.select, options.ignore, options.per_module_ignores, rules=owners)
    else:
        findings, skipped = run_rules(facts, options.select, options.ignore, options.per_module_ignores)
    return Report(facts=facts, findings=findings, skipped=skipped, notes=notes_for(facts), qdoctor_version=__version__)


def check(
    spec: str,
    options: CheckOptions | None = None,
    progress: Callable[[str], None] = lambda _: None,
    on_stage: OnStage | None = None,
) -> Report:
    """Check one target. Raises qdoctor.errors.TargetError when it cannot be checked at all.

    ``on_stage(message, facts)`` is called as each stage begins, with everything gathered so far (qdoctor.run.worker
    sends these snapshots to its parent, so a check that dies part-way still gives a report).
    """
    from qdoctor.gather import resources

    options = options or CheckOptions()
    started = time.perf_counter()
    with preserved_torch_state(), resources.monitoring():
        progress(f"loading {spec}")
        try:
            with resources.phase("load"):
                loaded = load_target_explained(spec, trust=options.trust, options=options.load)
        except FlowFailedBeforeModel as failed:
            return failed.report(options)
        return check_loaded(loaded, options, progress, on_stage, started=started)


def check_loaded(
    loaded: LoadedTarget,
    options: CheckOptions,
    progress: Callable[[str], None] = lambda _: None,
    on_stage: OnStage | None = None,
    started: float | None = None,
) -> Report:
    """Check a loaded target (a script's, or live objects from qdoctor.api): inputs, facts, rules, verified fixes.
    Raises qdoctor.errors.InputsDoNotFitError when the example inputs do not fit the model (unless the script had
    died in a quantization flow step first: that failure is then the report).

    ``started``: when the check began (before loading), so that the load phase is counted in the phase times."""
    from qdoctor.gather import progress as counted_progress
    from qdoctor.gather import resources
    from qdoctor.gather.rounds import timed_seconds
    from qdoctor.load.input_fit import check_loaded_inputs

    started = time.perf_counter() if started is None else started
    timed_before = timed_seconds()

    with (
        preserved_torch_state(),
        resources.monitoring() as monitor,
        counted_progress.reporting(progress) as progress,
    ):
        if on_stage is not None:
            on_stage("loaded", loaded_facts(loaded))
        progress("running the model once on the example inputs")
        try:
            with resources.phase("input_check"):
                check_loaded_inputs(loaded)
        except TargetError as error:
            # the inputs do not fit the model, but the script had already died in a quantization flow step: that
            # failure is the diagnosis (the model qdoctor found is the float one the step never quantized)
            facts = flow_failure_facts(loaded)
            if facts is None:
                raise
            return FlowFailedBeforeModel(facts, str(error)).report(options, ran_model=False)
        loaded_at = time.perf_counter()
        facts = gather_facts(loaded, options.gather, progress, on_stage)
        gathered_at = time.perf_counter()
        if on_stage is not None:
            on_stage("running the rules", facts)
        report = build_report(facts, options)
        diagnosed_at = time.perf_counter()
        if options.verify:
            if on_stage is not None:
                on_stage("verifying fixes", facts)
            with resources.phase("verify"):
                report.extras.update(verify_fixes(loaded, facts, report.findings, options, progress))
            add_after_fixes_findings(report, options)
        done = time.perf_counter()
        facts.resources = monitor.resources(
            resources.model_bytes(loaded.float_baseline), resources.model_bytes(loaded.subject)
        )
        # the phases of the whole check (gathering's own parts are listed beside them, by part)
        facts.phase_seconds.update(
            {
                "phase_load": loaded_at - started,
                "phase_gather": gathered_at - loaded_at,
                "phase_diagnose": diagnosed_at - gathered_at,
                "phase_verify": done - diagnosed_at,
                "phase_total": done - started,
                "inside_timed_runs": timed_seconds() - timed_before,
            }
        )
        return report


def add_after_fixes_findings(report: Report, options: CheckOptions) -> None:
    """The post-prescription checks (qdoctor.diagnose.registry.run_after_fixes): what the verified fix-all leaves
    unexplained is a finding too (QD024 when the fixed model is still clearly slower than float)."""
    added = run_after_fixes(
        report.facts,
        report.extras.get("fix_all"),
        report.findings,
        options.select,
        options.ignore,
        options.per_module_ignores,
    )
    if added:
        report.findings = sorted(report.findings + added, key=lambda f: f.sort_key())


class FlowFailedBeforeModel(TargetError):
    """The script died in a quantization flow step (a moved import, prepare, export...) before it defined any model:
    `qdoctor check` reports it as a diagnosis with the finding of the rule that owns the cause (exit 1), not as
    "could not check"; callers that need a model (compare) still get the one explained line of a TargetError."""

    def __init__(self, facts: Facts, text: str) -> None:
        self.facts = facts
        super().__init__(text)

    def report(self, options: CheckOptions, ran_model: bool | None = None) -> Report:
        owners = flow_failure_rules(self.facts)
        findings, skipped = run_rules(
            self.facts, options.select, options.ignore, options.per_module_ignores, rules=owners
        )
        crash = self.facts.target.load_crash
        where = f" at line {crash.line}" if crash is not None and crash.line else ""
        if ran_model is False:
            notes = [
                f"the script stopped{where} in a quantization step; the model it left was not run ({self}): only "
                "the failed step is diagnosed"
            ]
        else:
            notes = [f"the script stopped{where} before it defined any model: only the failed step is diagnosed"]
        return Report(facts=self.facts, findings=findings, skipped=skipped, notes=notes, qdoctor_version=__version__)


def flow_failure_facts(loaded: LoadedTarget) -> Facts | None:
    """The facts of a loaded script that died in a quantization flow step some rule owns, with no model facts
    (the model it left is not run); None when the script did not fail that way."""
    from qdoctor.facts import FlowInfo
    from qdoctor.gather.flows import torchao_version

    if loaded.target.load_crash is None:
        return None
    facts = loaded_facts(loaded)
    facts.flow = FlowInfo(flow="none", torchao_version=torchao_version())
    return facts if flow_failure_rules(facts) else None


def failed_script_facts(spec: str, error: ScriptFailedError) -> Facts | None:
    """Facts about a script that raised before defining a model, when what it raised is a quantization-flow failure
    some rule owns (a moved import, a refused mode or qconfig); None otherwise."""
    from pathlib import Path

    import torch

    from qdoctor.facts import CrashInfo, FlowInfo, Target
    from qdoctor.gather.environment import gather_environment
    from qdoctor.gather.flows import torchao_version

    crash = error.crash
    if not isinstance(crash, CrashInfo):
        return None
    path = Path(spec)
    target = Target(
        spec=spec,
        file=str(path.resolve()) if path.is_file() else None,
        subject_name="(none: the script stopped before defining a model)",
        float_name=None,
        inputs_name=None,
        inputs=[],
        load_crash=crash,
        script_text=path.read_text(errors="replace") if path.is_file() else "",
    )
    environment = gather_environment(torch.backends.quantized.engine, torch.get_num_threads())
    facts = Facts(target=target, environment=environment, flow=FlowInfo(flow="none", torchao_version=torchao_version()))
    return facts if flow_failure_rules(facts) else None


def load_target_explained(spec: str, trust: bool = False, options: LoadOptions | None = None) -> Any:
    """load_target, with a script that died at a moved import explained (qdoctor.diagnose.flow_causes). A script
    that died in a quantization flow step before defining a model raises FlowFailedBeforeModel: a report, not a
    "could not check"."""
    import sys

    from qdoctor.load.target import load_target

    try:
        return load_target(spec, trust=trust, options=options)
    except ScriptFailedError as error:
        torch, torchao = sys.modules.get("torch"), sys.modules.get("torchao")
        text = script_failure_text(
            error, str(getattr(torch, "__version__", "?")), getattr(torchao, "__version__", None) if torchao else None
        )
        facts = failed_script_facts(spec, error)
        if facts is not None:
            raise FlowFailedBeforeModel(facts, text) from None
        raise TargetError(text) from None


def verify_fixes(
    loaded: LoadedTarget,
    facts: Facts,
    findings: list[Finding],
    options: CheckOptions,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """The verified-prescriptions stage (qdoctor.prescribe): fills each finding's ``verified``, returns the extras."""
    from qdoctor.prescribe.verify import VERIFY_BENCH_TIME, PrescribeOptions, prescribe

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
