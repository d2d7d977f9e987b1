"""The one rule registry. A rule is a pure function ``Facts -> findings`` registered with ``@rule``.

A rule declares the facts it needs; when one is missing the rule is skipped with the reason, never run. A rule that
reports crashes declares the crash causes it owns (``owns=``, qdoctor.diagnose.cause); from those claims alone the
registry derives which crashes are explained, hands the rest to the residual rule (QD014 unexplained-crash), and
picks the rules to run when a quantization flow step raised before anything was quantized.

Slowness works the same way: a rule whose findings account for int8 being slower than float says so once, in its
registration (``explains_slowdown=True``); the residual slowdown rule (QD024 unexplained-slowdown,
``slowdown_residual=True``) is handed the findings of those rules on the same facts and reports a measured slowdown
that none of them explains.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from qdoctor.diagnose.cause import Cause
from qdoctor.diagnose.crash_causes import distinct_crashes
from qdoctor.diagnose.findings import Finding, Location, Severity, SkippedRule
from qdoctor.facts import CrashInfo, Facts, SourceLocation
from qdoctor.facts.prescription import FixAll

CheckFn = Callable[[Facts], Iterable[Finding]]
# A residual rule's function also takes the crashes that no registered rule owns.
ResidualFn = Callable[[Facts, list[CrashInfo]], Iterable[Finding]]


@dataclass(frozen=True)
class SlowdownExplanations:
    """What the residual slowdown rule is handed: the findings of the ``explains_slowdown`` rules on these facts, the
    rules that ran and found nothing (ruled out), and those that could not run (missing facts: not ruled out)."""

    findings: list[Finding]
    ruled_out: list[tuple[str, str]]  # (code, name) of explaining rules that ran without a finding
    not_checked: list[tuple[str, str]]  # (code, reason) of explaining rules skipped for missing facts


# A check of the verified fix-all (a post-prescription check): (facts, the fix-all summary, what explains a
# slowdown that the fixes did not apply) -> findings. Registered with @after_fixes(code) beside its rule.
AfterFixesFn = Callable[[Facts, FixAll, SlowdownExplanations], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    code: str  # QDnnn
    name: str  # kebab-case, matches rules/QDnnn-name.md
    severity: Severity  # default severity of its findings
    summary: str  # one line, for `qdoctor rules`
    needs: tuple[str, ...]  # Facts fields that must be present (not None)
    check: CheckFn  # a residual rule's function is called with the unexplained crashes here
    owns: tuple[Cause, ...] = ()  # the crash causes this rule reports: a crash with one of them is explained
    residual: bool = False  # reports the crashes that no registered rule owns
    explains_slowdown: bool = False  # its findings account for the int8 model being slower than float
    slowdown_residual: bool = False  # reports a measured slowdown that no explains_slowdown rule accounts for

    def owns_cause(self, cause: Cause) -> bool:
        return any(owned.id == cause.id for owned in self.owns)

    def finding(
        self,
        message: str,
        *,
        module: str | None = None,
        source: SourceLocation | None = None,
        evidence: dict | None = None,
        fix: str = "",
        severity: Severity | None = None,
        leads_to: tuple[str, ...] = (),
    ) -> Finding:
        location = Location(
            module=module,
            file=source.file if source else None,
            line=source.line if source else None,
            code=source.code if source else None,
        )
        return Finding(
            rule=self.code,
            name=self.name,
            severity=severity or self.severity,
            message=message,
            location=location,
            evidence=evidence or {},
            fix=fix,
            leads_to=leads_to,
        )


_REGISTRY: dict[str, Rule] = {}


def rule(
    code: str,
    name: str,
    severity: Severity,
    summary: str,
    needs: tuple[str, ...] = (),
    owns: tuple[Cause, ...] = (),
    residual: bool = False,
    explains_slowdown: bool = False,
    slowdown_residual: bool = False,
) -> Callable[[Callable[..., Iterable[Finding]]], Rule]:
    """Register a rule. ``owns``: the crash causes it reports. ``residual``: the function is
    ``(facts, unexplained_crashes) -> findings`` and reports every crash that no registered rule owns.
    ``explains_slowdown``: its findings say why int8 is slower than float (the one place that says so).
    ``slowdown_residual``: the function is ``(facts, explanations) -> findings``, handed SlowdownExplanations: the
    findings of every ``explains_slowdown`` rule on the same facts, and which of them ran."""

    def register(fn: Callable[..., Iterable[Finding]]) -> Rule:
        if code in _REGISTRY:
            raise ValueError(f"rule {code} registered twice")
        for cause in owns:
            claimed = [r.code for r in _REGISTRY.values() if r.owns_cause(cause)]
            if claimed:
                raise ValueError(f"crash cause {cause.id} owned by {claimed[0]} and {code}")
        if residual and slowdown_residual:
            raise ValueError(f"rule {code}: residual of crashes or of slowdowns, not both")
        if residual:

            def check(facts: Facts) -> Iterable[Finding]:
                return fn(facts, unexplained_crashes(facts))

        elif slowdown_residual:

            def check(facts: Facts) -> Iterable[Finding]:
                return fn(facts, slowdown_explanations(facts))

        else:
            check = fn
        registered = Rule(
            code, name, severity, summary, needs, check, owns, residual, explains_slowdown, slowdown_residual
        )
        _REGISTRY[code] = registered
        return registered

    return register


def all_rules() -> list[Rule]:
    """Every rule, sorted by code. Importing qdoctor.rules imports each rule module, which registers itself."""
    import qdoctor.diagnose.rules as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    return [_REGISTRY[c] for c in sorted(_REGISTRY)]


def owners(crash: CrashInfo, facts: Facts) -> list[Rule]:
    """The registered rules that own a cause of ``crash``. Whatever --select/--ignore say: ignoring a rule silences
    its finding, it does not make its crash unexplained."""
    return [r for r in all_rules() if any(cause.matches(crash, facts) for cause in r.owns)]


def unexplained_crashes(facts: Facts) -> list[CrashInfo]:
    """The facts' distinct crashes that no registered rule owns: what the residual rule reports."""
    return [crash for crash in distinct_crashes(facts) if not owners(crash, facts)]


def crash_rules(facts: Facts) -> list[Rule]:
    """The rules that report the facts' crashes: the owners of each crash's cause, and the residual rule when a crash
    has none. A crash is a number in the report's header whatever else the model is: it always has a finding."""
    crashes = distinct_crashes(facts)
    if not crashes:
        return []
    return [
        r
        for r in all_rules()
        if any(cause.matches(crash, facts) for cause in r.owns for crash in crashes)
        or (r.residual and unexplained_crashes(facts))
    ]


def slowdown_explanations(facts: Facts) -> SlowdownExplanations:
    """The findings of every rule registered with ``explains_slowdown`` whose facts are present, whatever
    --select/--ignore/per-module-ignores say: ignoring a rule silences its finding, it does not make a slowdown
    unexplained. Rules are pure, so running them again on the same facts gives the same findings."""
    findings: list[Finding] = []
    ruled_out: list[tuple[str, str]] = []
    not_checked: list[tuple[str, str]] = []
    for r in all_rules():
        if not r.explains_slowdown:
            continue
        missing = [n for n in r.needs if getattr(facts, n, None) is None]
        if missing:
            not_checked.append((r.code, f"needs {', '.join(missing)}"))
            continue
        found = list(r.check(facts))
        findings.extend(found)
        if not found:
            ruled_out.append((r.code, r.name))
    return SlowdownExplanations(findings, ruled_out, not_checked)


_AFTER_FIXES: dict[str, AfterFixesFn] = {}


def after_fixes(code: str) -> Callable[[AfterFixesFn], AfterFixesFn]:
    """Register rule ``code``'s check of the verified fix-all: a rule is pure over Facts, and what the fixes leave
    is known only once prescribe/ measured them, so this one check runs after prescription (run_after_fixes)."""

    def register(fn: AfterFixesFn) -> AfterFixesFn:
        if code in _AFTER_FIXES:
            raise ValueError(f"rule {code} registered an after-fixes check twice")
        _AFTER_FIXES[code] = fn
        return fn

    return register


def run_after_fixes(
    facts: Facts,
    fix_all: FixAll | None,
    findings: list[Finding],
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    per_module_ignores: Mapping[str, Iterable[str]] | None = None,
) -> list[Finding]:
    """The selected rules' checks of the verified fix-all. Each is handed what explains a slowdown that the fix-all
    did not apply (an explaining finding whose fix was left out may still account for what remains); a rule that
    already reported on the model as written is not asked again."""
    if fix_all is None:
        return []
    all_rules()  # import every rule module, which registers its after-fixes check
    explained = slowdown_explanations(facts)
    applied = set(fix_all.fixes) if fix_all.applied else set()
    unfixed = SlowdownExplanations(
        [f for f in explained.findings if f.rule not in applied], explained.ruled_out, explained.not_checked
    )
    reported = {f.rule for f in findings}
    found: list[Finding] = []
    for code, check in sorted(_AFTER_FIXES.items()):
        if code in reported or not selected(code, select, ignore):
            continue
        found.extend(f for f in check(facts, fix_all, unfixed) if not module_ignored(f, per_module_ignores))
    return with_inputs_caveat(found, facts)


# A rule's reading of a report's text (qdoctor.facts.report.StaticRead: steps read, not run): registered with
# @from_text(code) beside the rule, a pure Facts -> findings of its own. run_from_text marks its findings and keeps
# them from repeating what a run found.
_FROM_TEXT: dict[str, CheckFn] = {}
STATIC_BASIS = "static: read, not run"
TRACEBACK_BASIS = "from the report's traceback, not reproduced"


def from_text(code: str) -> Callable[[CheckFn], CheckFn]:
    """Register rule ``code``'s reading of the report's statically read steps (facts.target.static_read)."""

    def register(fn: CheckFn) -> CheckFn:
        if code in _FROM_TEXT:
            raise ValueError(f"rule {code} registered a reading of the text twice")
        _FROM_TEXT[code] = fn
        return fn

    return register


def run_from_text(
    facts: Facts,
    found: list[Finding],
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
) -> list[Finding]:
    """What the report's text says beyond what ran: each selected rule's reading of the static steps, then the
    report's tracebacks mapped through the crash table (qdoctor.diagnose.report_crashes). A finding of a rule that
    the run (``found``) already reported is left out; none is an error unless the text alone makes it certain
    (``evidence["certain"]``), and none says the model crashed."""
    from qdoctor.diagnose.report_crashes import traceback_findings

    all_rules()  # import every rule module, which registers its reading of the text
    reported = {f.rule for f in found}
    added: list[Finding] = []
    # a statement that ran and raised is the run's: its crash is reported, and what the text says of the step it
    # would have made (a model it would have prepared) is moot
    raised = {c.line for c in facts.target.script_errors if c.line and c.follows_from is None}
    if facts.target.static_read is not None:
        for code, read in sorted(_FROM_TEXT.items()):
            if code in reported or not selected(code, select, ignore):
                continue
            for finding in read(facts):
                if finding.location.line in raised:
                    continue
                finding.evidence["basis"] = STATIC_BASIS
                if not finding.evidence.get("certain") and finding.severity is Severity.ERROR:
                    finding.severity = Severity.WARNING
                added.append(finding)
    reported |= {f.rule for f in added}
    for finding in traceback_findings(facts, all_rules(), owners):
        if finding.rule in reported or not selected(finding.rule, select, ignore):
            continue
        finding.evidence["basis"] = TRACEBACK_BASIS
        reported.add(finding.rule)
        added.append(finding)
    added.sort(key=Finding.sort_key)
    return added


def flow_failure_rules(facts: Facts) -> list[Rule]:
    """The rules that own a flow-step cause of one of the facts' crashes: empty unless a step of a quantization flow
    raised (then the model the script meant to quantize may have stayed float, and these rules say why)."""
    crashes = distinct_crashes(facts)
    return [r for r in all_rules() if owns_a_flow_step_crash(r, facts, crashes)]


def owns_a_flow_step_crash(r: Rule, facts: Facts, crashes: list[CrashInfo] | None = None) -> bool:
    """Whether a quantization flow step raised a cause ``r`` owns: the rule is then asked about that crash, which it
    explains from the crash alone, even in a report with no model facts (the script stopped in prepare() or
    fuse_modules() before any model was bound)."""
    found = distinct_crashes(facts) if crashes is None else crashes
    return any(cause.flow_step and cause.matches(crash, facts) for cause in r.owns for crash in found)


def get_rule(code: str) -> Rule | None:
    return {r.code: r for r in all_rules()}.get(code.upper())


def selected(rule_code: str, select: Iterable[str] | None, ignore: Iterable[str] | None) -> bool:
    """Ruff-style selection: codes or prefixes ("QD00"); the longer matching prefix wins."""
    select = list(select) if select else ["QD"]
    ignore = list(ignore or [])
    best_select = max((len(p) for p in select if rule_code.startswith(p.upper())), default=-1)
    best_ignore = max((len(p) for p in ignore if rule_code.startswith(p.upper())), default=-1)
    return best_select >= 0 and best_select > best_ignore


def module_matches(module: str, pattern: str) -> bool:
    """A per-module-ignores pattern: a glob over the module path ("backbone.*"), or a module path that also covers
    the modules inside it ("backbone" covers "backbone.0.conv")."""
    return fnmatch.fnmatchcase(module, pattern) or module == pattern or module.startswith(pattern + ".")


def module_ignored(finding: Finding, per_module_ignores: Mapping[str, Iterable[str]] | None) -> bool:
    """True when a per-module-ignores entry covers the finding's module and rule (codes or prefixes)."""
    module = finding.location.module
    if not per_module_ignores or module is None:
        return False
    return any(
        module_matches(module, pattern) and any(finding.rule.startswith(code.upper()) for code in codes)
        for pattern, codes in per_module_ignores.items()
    )


def run_rules(
    facts: Facts,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    per_module_ignores: Mapping[str, Iterable[str]] | None = None,
    rules: Iterable[Rule] | None = None,
) -> tuple[list[Finding], list[SkippedRule]]:
    """Run the selected rules (of ``rules``, else of every rule) whose needed facts are present."""
    findings: list[Finding] = []
    skipped: list[SkippedRule] = []
    crashes = distinct_crashes(facts)  # once: a rule that owns a failed flow step runs without its model facts
    for r in all_rules() if rules is None else rules:
        if not selected(r.code, select, ignore):
            continue
        missing = [n for n in r.needs if getattr(facts, n, None) is None]
        if missing and owns_a_flow_step_crash(r, facts, crashes):
            missing = []  # the rule answers for the failed step from the crash; its model facts are not needed
        if missing:
            reasons = "; ".join(f"{n}: {facts.unavailable.get(n, 'not gathered')}" for n in missing)
            applicable = not all(n in facts.not_applicable for n in missing)
            skipped.append(SkippedRule(r.code, r.name, f"needs {', '.join(missing)} ({reasons})", applicable))
            continue
        found = [f for f in r.check(facts) if not module_ignored(f, per_module_ignores)]
        if any(n in TIMING_FACTS for n in r.needs):
            found = with_inputs_caveat(found, facts)
        findings.extend(found)
    findings.sort(key=Finding.sort_key)
    return mark_consequences(findings), skipped


def mark_consequences(findings: list[Finding]) -> list[Finding]:
    """Mark each finding that another finding names in its ``leads_to`` as that finding's consequence (the first root
    cause, in report order, that names its code). A root cause is never itself marked by a finding it leads to."""
    roots = [f for f in findings if f.leads_to and f.consequence_of is None]
    for finding in findings:
        root = next((r for r in roots if finding.rule in r.leads_to and r.rule != finding.rule), None)
        if root is not None and finding not in roots and finding.consequence_of is None:
            finding.consequence_of = root.rule
    return findings


# A rule that needs one of these rests on timing: on invented inputs its findings say so (with_inputs_caveat).
TIMING_FACTS = ("benchmark", "profile", "float_profile")


def with_inputs_caveat(findings: list[Finding], facts: Facts) -> list[Finding]:
    """Findings that rest on timing, with ``evidence["inputs_caveat"]`` when qdoctor invented the inputs: the
    timings describe a workload the script may never run (facts.target.inputs_origin)."""
    caveat = facts.target.invented_inputs_caveat()
    if caveat is not None:
        for finding in findings:
            finding.evidence.setdefault("inputs_caveat", caveat)
    return findings
