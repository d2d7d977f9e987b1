"""The one rule registry. A rule is a pure function ``Facts -> findings`` registered with ``@rule``.

A rule declares the facts it needs; when one is missing the rule is skipped with the reason, never run. A rule that
reports crashes declares the crash causes it owns (``owns=``, qdoctor.diagnose.cause); from those claims alone the
registry derives which crashes are explained, hands the rest to the residual rule (QD014 unexplained-crash), and
picks the rules to run when a quantization flow step raised before anything was quantized.
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

CheckFn = Callable[[Facts], Iterable[Finding]]
# A residual rule's function also takes the crashes that no registered rule owns.
ResidualFn = Callable[[Facts, list[CrashInfo]], Iterable[Finding]]


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
) -> Callable[[Callable[..., Iterable[Finding]]], Rule]:
    """Register a rule. ``owns``: the crash causes it reports. ``residual``: the function is
    ``(facts, unexplained_crashes) -> findings`` and reports every crash that no registered rule owns."""

    def register(fn: Callable[..., Iterable[Finding]]) -> Rule:
        if code in _REGISTRY:
            raise ValueError(f"rule {code} registered twice")
        for cause in owns:
            claimed = [r.code for r in _REGISTRY.values() if r.owns_cause(cause)]
            if claimed:
                raise ValueError(f"crash cause {cause.id} owned by {claimed[0]} and {code}")
        if residual:

            def check(facts: Facts) -> Iterable[Finding]:
                return fn(facts, unexplained_crashes(facts))

        else:
            check = fn
        registered = Rule(code, name, severity, summary, needs, check, owns, residual)
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


def flow_failure_rules(facts: Facts) -> list[Rule]:
    """The rules that own a flow-step cause of one of the facts' crashes: empty unless a step of a quantization flow
    raised (then the model the script meant to quantize may have stayed float, and these rules say why)."""
    crashes = distinct_crashes(facts)
    return [
        r
        for r in all_rules()
        if any(cause.flow_step and cause.matches(crash, facts) for cause in r.owns for crash in crashes)
    ]


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
    for r in all_rules() if rules is None else rules:
        if not selected(r.code, select, ignore):
            continue
        missing = [n for n in r.needs if getattr(facts, n, None) is None]
        if missing:
            reasons = "; ".join(f"{n}: {facts.unavailable.get(n, 'not gathered')}" for n in missing)
            applicable = not all(n in facts.not_applicable for n in missing)
            skipped.append(SkippedRule(r.code, r.name, f"needs {', '.join(missing)} ({reasons})", applicable))
            continue
        findings.extend(f for f in r.check(facts) if not module_ignored(f, per_module_ignores))
    findings.sort(key=Finding.sort_key)
    return findings, skipped
