"""The one rule registry. A rule is a pure function ``Facts -> findings`` registered with ``@rule``.

A rule declares the facts it needs; when one is missing the rule is skipped with the reason, never run.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from qdoctor.diagnose.findings import Finding, Location, Severity, SkippedRule
from qdoctor.facts import Facts, SourceLocation

CheckFn = Callable[[Facts], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    code: str  # QDnnn
    name: str  # kebab-case, matches rules/QDnnn-name.md
    severity: Severity  # default severity of its findings
    summary: str  # one line, for `qdoctor rules`
    needs: tuple[str, ...]  # Facts fields that must be present (not None)
    check: CheckFn

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
    code: str, name: str, severity: Severity, summary: str, needs: tuple[str, ...] = ()
) -> Callable[[CheckFn], Rule]:
    def register(fn: CheckFn) -> Rule:
        if code in _REGISTRY:
            raise ValueError(f"rule {code} registered twice")
        registered = Rule(code, name, severity, summary, needs, fn)
        _REGISTRY[code] = registered
        return registered

    return register


def all_rules() -> list[Rule]:
    """Every rule, sorted by code. Importing qdoctor.rules imports each rule module, which registers itself."""
    import qdoctor.diagnose.rules as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    return [_REGISTRY[c] for c in sorted(_REGISTRY)]


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
) -> tuple[list[Finding], list[SkippedRule]]:
    findings: list[Finding] = []
    skipped: list[SkippedRule] = []
    for r in all_rules():
        if not selected(r.code, select, ignore):
            continue
        missing = [n for n in r.needs if getattr(facts, n, None) is None]
        if missing:
            reasons = "; ".join(f"{n}: {facts.unavailable.get(n, 'not gathered')}" for n in missing)
            skipped.append(SkippedRule(r.code, r.name, f"needs {', '.join(missing)} ({reasons})"))
            continue
        findings.extend(f for f in r.check(facts) if not module_ignored(f, per_module_ignores))
    findings.sort(key=Finding.sort_key)
    return findings, skipped
