"""SARIF 2.1.0 report, for GitHub code scanning and other SARIF viewers.

``tool.driver.rules[]`` comes from the rule documents in rules/ (qdoctor.report.ruledocs, the one source of rule text);
each finding becomes a result whose level follows its severity, located in the user's file (relative to ``root``
when it lies under it, else a file URI) with the module path as its logical location.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.facts.location import display_path
from qdoctor.report.model import Report, to_dict
from qdoctor.report.render.common import verified_text
from qdoctor.report.ruledocs import RuleDoc

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _plain(markdown: str) -> str:
    """A document section as one paragraph of plain text."""
    return " ".join(markdown.split())


def rule_descriptors(docs: Mapping[str, RuleDoc], severities: Mapping[str, Severity]) -> list[dict[str, Any]]:
    descriptors = []
    for code in sorted(docs):
        doc = docs[code]
        descriptor: dict[str, Any] = {
            "id": doc.code,
            "name": doc.name,
            "shortDescription": {"text": doc.summary or doc.name},
            "fullDescription": {"text": _plain(doc.sections.get("What it does", "")) or doc.summary or doc.name},
            "help": {"text": doc.text, "markdown": doc.text},
        }
        if code in severities:
            descriptor["defaultConfiguration"] = {"level": LEVEL[severities[code]]}
        descriptors.append(descriptor)
    return descriptors


def registered_rules() -> tuple[dict[str, RuleDoc], dict[str, Severity]]:
    """Every registered rule's document and default severity."""
    from qdoctor.diagnose.registry import all_rules
    from qdoctor.report.ruledocs import load_docs

    docs = load_docs()
    rules = all_rules()
    return {r.code: docs[r.code] for r in rules if r.code in docs}, {r.code: r.severity for r in rules}


def _artifact(file: str, root: str) -> dict[str, Any]:
    relative = display_path(file, root)
    if not os.path.isabs(relative):
        return {"uri": relative, "uriBaseId": SRCROOT}
    return {"uri": Path(os.path.abspath(file)).as_uri()}


def _fingerprint(f: Finding) -> str:
    """Stable across runs and line moves: the rule and the module it is about."""
    return hashlib.sha256(f"{f.rule}\0{f.location.module or ''}".encode()).hexdigest()[:32]


def _result(
    f: Finding, cleaned: dict[str, Any], rule_index: dict[str, int], target_file: str | None, root: str
) -> dict[str, Any]:
    """``cleaned``: the finding as the JSON report writes it (no inf/nan), for the machine-readable properties."""
    loc = f.location
    location: dict[str, Any] = {}
    file = loc.file or target_file  # a finding about the model with no line of its own points at the model file
    if file:
        physical: dict[str, Any] = {"artifactLocation": _artifact(file, root)}
        if loc.file and loc.line:
            region: dict[str, Any] = {"startLine": loc.line}
            if loc.code:
                region["snippet"] = {"text": loc.code}
            physical["region"] = region
        location["physicalLocation"] = physical
    if loc.module is not None:
        location["logicalLocations"] = [
            {"name": loc.module or "<root>", "fullyQualifiedName": loc.module or "<root>", "kind": "module"}
        ]
    text = (f"({f.consequence_text}) " if f.consequence_of else "") + f.message
    if f.fix:
        text += f"\nFix:\n{f.fix}"
    markdown = (
        (f"*{f.consequence_text}* " if f.consequence_of else "")
        + f.message
        + (f"\n\n**Fix:**\n\n```python\n{f.fix.rstrip()}\n```" if f.fix else "")
    )
    verified = verified_text(f.verified)
    if verified:
        text += f"\n{verified}"
        markdown += f"\n\n{verified}"
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "level": LEVEL[f.severity],
        "message": {"text": text, "markdown": markdown},
        "partialFingerprints": {"qdoctorRuleModule/v1": _fingerprint(f)},
        "properties": {k: cleaned[k] for k in ("evidence", "fix", "verified")},
    }
    if f.consequence_of:
        result["properties"]["consequenceOf"] = f.consequence_of
    if f.rule in rule_index:
        result["ruleIndex"] = rule_index[f.rule]
    if location:
        result["locations"] = [location]
    return result


def to_sarif(
    report: Report,
    root: str | None = None,
    rule_docs: Mapping[str, RuleDoc] | None = None,
    rule_severities: Mapping[str, Severity] | None = None,
) -> dict[str, Any]:
    """The SARIF log as a dict. ``rule_docs``/``rule_severities`` default to every registered rule. ``root``: the
    directory result paths are relative to (%SRCROOT%; default: the current directory)."""
    root = root if root is not None else os.getcwd()
    if rule_docs is None:
        rule_docs, registered_severities = registered_rules()
        rule_severities = rule_severities if rule_severities is not None else registered_severities
    descriptors = rule_descriptors(rule_docs, rule_severities or {})
    rule_index = {d["id"]: i for i, d in enumerate(descriptors)}
    facts = report.facts
    summary = to_dict(report, root)  # the JSON report's numbers, so SARIF consumers can read them too
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "qdoctor",
                "semanticVersion": report.qdoctor_version or "0.0.0",
                "rules": descriptors,
            }
        },
        "results": [
            _result(f, cleaned, rule_index, facts.target.file, root)
            for f, cleaned in zip(report.findings, summary["findings"], strict=False)
        ],
        "invocations": [
            {
                "executionSuccessful": True,
                "toolExecutionNotifications": [
                    {
                        "level": "note",
                        "message": {"text": f"{s.rule} {s.name} skipped: {s.reason}"},
                        "descriptor": {"id": s.rule},
                    }
                    for s in report.skipped
                ],
            }
        ],
        "columnKind": "unicodeCodePoints",
        "properties": {
            "target": summary["target"]["spec"],
            "inputs_caveat": summary["target"]["inputs_caveat"],
            "weights": summary["weights"],
            "benchmark": summary["benchmark"],
            "size": summary["size"],
            "numerics": summary["numerics"],
            "notes": report.notes,
        },
    }
    # %SRCROOT% is named, not spelled out: the log holds no path of the machine it was made on (code scanning
    # resolves it against the checkout, as it does for the other linters' relative paths)
    run["originalUriBaseIds"] = {SRCROOT: {"description": {"text": "the directory qdoctor ran in"}}}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def render(report: Report, root: str | None = None, **options: Any) -> str:
    """``root``: the directory result paths are relative to (the CLI passes the working directory, which is the
    repository root when run from CI). Options ``rule_docs``/``rule_severities`` replace the registered rules."""
    sarif = to_sarif(report, root, options.get("rule_docs"), options.get("rule_severities"))
    return json.dumps(sarif, indent=2, ensure_ascii=False) + "\n"
