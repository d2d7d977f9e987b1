"""The report of a bug report whose code gave no model qdoctor could run (no module, no inputs that fit, a package
this machine lacks): what its text still says. The crashes its script raised here, the tracebacks it quotes and the
quantization steps read from its Python without running them (qdoctor.diagnose.registry.run_from_text). A report,
not "could not check": exit 2 is left for a text that holds neither Python nor a traceback.
"""

from __future__ import annotations

from typing import Any

from qdoctor import __version__
from qdoctor.diagnose.registry import crash_rules, flow_failure_rules, run_from_text, run_rules
from qdoctor.facts import NO_FLOW, Facts, FlowInfo
from qdoctor.report.model import Report


def read_only_report(target: Any, reason: str, options: Any) -> Report:
    """``target``: the report's Target as loading left it; ``reason``: why no model was checked (one line)."""
    import torch

    from qdoctor.gather.environment import gather_environment
    from qdoctor.gather.flows import torchao_version
    from qdoctor.report.notes import script_notes

    if not target.subject_name:
        target.subject_name = "(none: no model of the report could be run)"
    environment = gather_environment(torch.backends.quantized.engine, torch.get_num_threads())
    facts = Facts(
        target=target, environment=environment, flow=FlowInfo(kind=NO_FLOW, torchao_version=torchao_version())
    )
    rules = flow_failure_rules(facts)
    rules += [r for r in crash_rules(facts) if r not in rules]
    findings, skipped = run_rules(facts, options.select, options.ignore, options.per_module_ignores, rules=rules)
    findings = sorted(findings + run_from_text(facts, findings, options.select, options.ignore), key=_order)
    reason = reason.split(": ", 1)[1] if reason.startswith(str(target.spec)) and ": " in reason else reason
    if target.report_text is not None and not target.report_text.ran:
        reason = "the report holds no code, only the errors it quotes"
    notes = [
        f"no model from this report could be run here ({reason}): the findings come from what its script raised, "
        "the tracebacks it quotes and its Python read without running it",
        *script_notes(target),
    ]
    return Report(facts=facts, findings=findings, skipped=skipped, notes=notes, qdoctor_version=__version__)


def _order(finding: Any) -> tuple:
    key: tuple = finding.sort_key()
    return key
