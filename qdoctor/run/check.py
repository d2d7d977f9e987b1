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
from qdoctor.diagnose.registry import crash_rules, flow_failure_rules, run_after_fixes, run_from_text, run_rules
from qdoctor.errors import ScriptFailedError, TargetError
from qdoctor.facts import Facts
from qdoctor.facts.prescription import Prescription
from qdoctor.gather import GatherOptions, OnStage, gather_facts
from qdoctor.introspect.state import preserved_torch_state
from qdoctor.load.options import LoadOptions
from qdoctor.report.model import Report
from qdoctor.report.notes import NO_MODEL_DEFINED, check_notes, stopped_in_flow_step_notes

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
    rounds: int = 3  # treatment rounds (qdoctor.run.treatment): 1 stops after the first fix-all


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
    if facts.target.report_text is not None:  # a report: what its text says beyond what ran
        findings = sorted(findings + run_from_text(facts, findings, options.select, options.ignore), key=_order)
    return Report(
        facts=facts,
        findings=findings,
        skipped=skipped,
        notes=check_notes(facts, _flow_failed(facts)),
        qdoctor_version=__version__,
    )


def _order(finding: Finding) -> tuple:
    return finding.sort_key()


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
        from qdoctor.flows import program_flow

        if program_flow(spec) is not None:  # a runtime's serialized program (.pte): no script, no torch model
            from qdoctor.run.program import program_report

            return program_report(spec, options, progress)
        progress(f"loading {spec}")
        try:
            with resources.phase("load"):
                loaded = load_target_explained(spec, trust=options.trust, options=options.load)
        except FlowFailedBeforeModel as failed:
            return failed.report(options)
        except TargetError as error:
            if error.partial is None:
                raise
            from qdoctor.run.read_only import read_only_report

            return read_only_report(error.partial, str(error), options)
        try:
            return check_loaded(loaded, options, progress, on_stage, started=started)
        except TargetError as error:
            if loaded.target.report_text is None:
                raise
            from qdoctor.run.read_only import read_only_report

            return read_only_report(loaded.target, str(error), options)


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
                report.prescription, fixed = verify_fixes(loaded, facts, report.findings, options, progress)
            added = add_after_fixes_findings(report, options)
            if options.rounds > 1 and report.prescription is not None:
                with resources.phase("treatment"):
                    treat_further(loaded, report, fixed, added, options, progress)
            fixed = None  # the fix-all model is freed before the peak memory is read
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


def add_after_fixes_findings(report: Report, options: CheckOptions) -> list[Finding]:
    """The post-prescription checks (qdoctor.diagnose.registry.run_after_fixes): what the verified fix-all leaves
    unexplained is a finding too (QD024 when the fixed model is still clearly slower than float). Returns those
    added."""
    added = run_after_fixes(
        report.facts,
        report.prescription.fix_all if report.prescription is not None else None,
        report.findings,
        options.select,
        options.ignore,
        options.per_module_ignores,
    )
    if added:
        report.findings = sorted(report.findings + added, key=lambda f: f.sort_key())
    return added


def treat_further(
    loaded: LoadedTarget,
    report: Report,
    fixed: Any,
    added: list[Finding],
    options: CheckOptions,
    progress: Callable[[str], None],
) -> None:
    """Treatment rounds 2..options.rounds (qdoctor.run.treatment) on the model the first fix-all made."""
    from qdoctor.run.treatment import treat

    def gather(next_loaded: LoadedTarget, earlier: Facts) -> Facts:
        from qdoctor.introspect.state import quantized_engine

        with quantized_engine(next_loaded.user_engine):  # the engine the fixed model was converted and run under
            facts = gather_facts(next_loaded, options.gather, progress, reuse=earlier)
        facts.treatment_round = earlier.treatment_round + 1
        return facts

    def verify(
        next_loaded: LoadedTarget, facts: Facts, findings: list[Finding], start_from: Any
    ) -> tuple[Prescription | None, Any]:
        return verify_fixes(next_loaded, facts, findings, options, progress, start_from)

    treat(
        loaded,
        report,
        fixed,
        added,
        options.rounds,
        (gather, lambda facts: build_report(facts, options), verify, lambda r: add_after_fixes_findings(r, options)),
        progress,
        # on untrained weights a sub-floor SQNR is the random draw's, not a cause to treat
        accuracy_judged=not (report.facts.weights is not None and report.facts.weights.untrained),
    )


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
        notes = stopped_in_flow_step_notes(self.facts, str(self) if ran_model is False else None)
        return Report(facts=self.facts, findings=findings, skipped=skipped, notes=notes, qdoctor_version=__version__)


def flow_failure_facts(loaded: LoadedTarget) -> Facts | None:
    """The facts of a loaded script that died in a quantization flow step some rule owns, with no model facts
    (the model it left is not run); None when the script did not fail that way."""
    from qdoctor.facts import NO_FLOW, FlowInfo
    from qdoctor.gather.flows import torchao_version

    if loaded.target.load_crash is None:
        return None
    facts = loaded_facts(loaded)
    facts.flow = FlowInfo(kind=NO_FLOW, torchao_version=torchao_version())
    return facts if flow_failure_rules(facts) else None


def failed_script_facts(spec: str, error: ScriptFailedError) -> Facts | None:
    """Facts about a script that raised before defining a model, when what it raised is a quantization-flow failure
    some rule owns (a moved import, a refused mode or qconfig); None otherwise."""
    from pathlib import Path

    import torch

    from qdoctor.facts import NO_FLOW, CrashInfo, FlowInfo, Target
    from qdoctor.gather.environment import gather_environment
    from qdoctor.gather.flows import torchao_version

    crash = error.crash
    if not isinstance(crash, CrashInfo):
        return None
    path = Path(spec)
    target = Target(
        spec=spec,
        file=str(path.resolve()) if path.is_file() else None,
        subject_name=NO_MODEL_DEFINED,
        float_name=None,
        inputs_name=None,
        inputs=[],
        load_crash=crash,
        script_text=path.read_text(errors="replace") if path.is_file() else "",
    )
    environment = gather_environment(torch.backends.quantized.engine, torch.get_num_threads())
    facts = Facts(
        target=target, environment=environment, flow=FlowInfo(kind=NO_FLOW, torchao_version=torchao_version())
    )
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
        explained = TargetError(text)
        explained.partial = error.partial  # a report still has its quoted tracebacks and its statically read steps
        raise explained from None


def verify_fixes(
    loaded: LoadedTarget,
    facts: Facts,
    findings: list[Finding],
    options: CheckOptions,
    progress: Callable[[str], None],
    start_from: Any = None,
) -> tuple[Prescription | None, Any]:
    """The verified-prescriptions stage (qdoctor.prescribe): fills each finding's ``verified``, returns the
    prescription (fix-all, the speed/accuracy table, the saved model) and the fix-all model's measurement (its model
    kept when another treatment round may examine it)."""
    from qdoctor.prescribe.verify import VERIFY_BENCH_TIME, PrescribeOptions, prescribe_keeping

    return prescribe_keeping(
        loaded,
        facts,
        findings,
        PrescribeOptions(
            bench=options.gather.bench,
            bench_time=min(options.verify_bench_time or VERIFY_BENCH_TIME, options.gather.bench_time),
            save_fixed=options.save_fixed,
            keep_fixed=options.rounds > 1,
            start_from=start_from,
        ),
        progress,
    )
