"""The report: findings, skipped rules and the facts they came from. Reporters render it; nothing here prints."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from qdoctor.diagnose.findings import Finding, Severity, SkippedRule
from qdoctor.diagnose.flow_causes import flow_failure
from qdoctor.facts.location import display_message, display_path
from qdoctor.facts.prescription import Prescription, Treatment

SCHEMA_VERSION = 1


FAIL_LEVELS = ("error", "warning", "info", "never")


@dataclass(repr=False)
class Report:
    """What one check found: ``findings`` (each with ``rule``, ``severity``, ``message``, ``location``, ``fix`` and,
    once measured, ``verified``), the rules skipped and why, and the facts they came from.

    ``ok`` is True when no finding is at or above ``fail_on`` (the CLI's exit code 0); ``to_dict`` is the JSON
    document. Plain data: it knows none of its renderers (qdoctor.report.render renders it; the Report of the Python
    API, qdoctor.api.Report, adds ``to_markdown``, ``to_html``... and Jupyter's inline view on top of them).
    """

    facts: Any  # qdoctor.facts.Facts
    findings: list[Finding]
    skipped: list[SkippedRule]
    notes: list[str] = field(default_factory=list)
    qdoctor_version: str = ""
    extras: dict[str, Any] = field(default_factory=dict)  # what other stages add to the JSON (the worker's info)
    prescription: Prescription | None = None  # the verified fix-all, speed/accuracy table, saved model (prescribe)
    fail_on: str = "warning"  # the level ``ok`` judges by (the Python API's option; the CLI passes its own)

    @property
    def treatment(self) -> Treatment | None:
        """The treatment rounds after the first fix-all (qdoctor.run.treatment), when a second round ran."""
        return self.prescription.treatment if self.prescription is not None else None

    def skipped_here(self) -> list[SkippedRule]:
        """The skipped rules a human-readable report lists: those that could apply to this kind of model (JSON and
        SARIF keep every skipped rule)."""
        return [s for s in self.skipped if s.applicable]

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def exit_code(self, fail_on: str = "warning") -> int:
        """0: nothing at or above ``fail_on``; 1: findings at or above it (Ruff's convention; 2 is the CLI's)."""
        if fail_on == "never":
            return 0
        threshold = Severity(fail_on).rank
        return 1 if any(f.severity.rank >= threshold for f in self.findings) else 0

    @property
    def ok(self) -> bool:
        """No finding at or above ``fail_on``."""
        return self.exit_code(self.fail_on) == 0

    def failing(self) -> list[Finding]:
        """The findings at or above ``fail_on`` (what makes ``ok`` False)."""
        if self.fail_on == "never":
            return []
        threshold = Severity(self.fail_on).rank
        return [f for f in self.findings if f.severity.rank >= threshold]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema version 1), as plain Python values."""
        return to_dict(self)

    def __repr__(self) -> str:
        target = getattr(self.facts, "target", None)
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.rule] = counts.get(f.rule, 0) + 1
        found = ", ".join(f"{rule}x{n}" if n > 1 else rule for rule, n in counts.items()) or "no findings"
        spec = getattr(target, "spec", "?")
        return f"<qdoctor Report {spec}: {found}; ok={self.ok} (fail_on={self.fail_on!r})>"


def _clean(value: Any) -> Any:
    """JSON has no inf/nan: write them as strings so the output stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "-inf" if value < 0 else "nan"
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value


def _timing(t: Any) -> dict[str, Any] | None:
    if t is None:
        return None
    d = asdict(t)
    d["spread"] = t.spread
    return d


def _graph_summary(graph: Any) -> dict[str, Any] | None:
    """Node counts by kind of the subject's graph (FX, PT2E, TorchScript); the nodes themselves stay in Facts."""
    from qdoctor.facts.graph import count_kinds

    return None if graph is None else {"nodes": len(graph), "kinds": count_kinds(graph)}


def _resources(facts: Any) -> dict[str, Any] | None:
    """Peak memory of the check (bytes) and the float model's size, for the ratio (qdoctor.gather.resources)."""
    found = facts.resources
    if found is None:
        return None
    ratio = found.added_per_model
    return {**asdict(found), "added_per_float_model": round(ratio, 2) if ratio is not None else None}


def _flow(facts: Any, root: str | None) -> dict[str, Any] | None:
    """The flow facts, with the flow step that raised as the rules diagnose it (``failure``, before ``notes``)."""
    flow = getattr(facts, "flow", None)
    if flow is None:
        return None
    described = asdict(flow)
    described.pop("kind")
    notes = described.pop("notes")
    failure = flow_failure(facts)
    return {
        "flow": flow.kind.name,
        **described,
        "failure": _location(failure, root) if failure is not None else None,
        "notes": notes,
    }


def _deploy(facts: Any, root: str | None) -> dict[str, Any] | None:
    """--deploy: the programs lowered, their delegation per op (with the script's lines) and latencies."""
    found = facts.deploy
    if found is None:
        return None
    described = asdict(found)
    for program, facts_program in zip(described["programs"], found.programs, strict=True):
        program["latency"] = _timing(facts_program.latency)
    described["speedup_interval"] = found.speedup.as_dict() if found.speedup is not None else None
    described["speedup"] = found.speedup.value if found.speedup is not None else None
    return described


def _weights(facts: Any) -> dict[str, Any] | None:
    """Trained / untrained / unknown with the reason, and the header's note when accuracy is not judged."""
    weights = getattr(facts, "weights", None)
    return None if weights is None else weights.as_dict()


def _crash(crash: Any, root: str | None) -> dict[str, Any]:
    """A crash without its traceback, its file printed as every path is (display_path)."""
    described = {k: v for k, v in asdict(crash).items() if k != "traceback"}
    if described.get("file"):
        described["file"] = display_path(described["file"], root)
    if isinstance(described.get("message"), str):
        described["message"] = display_message(described["message"])
    return described


def _location(location: Any, root: str | None) -> dict[str, Any]:
    described = asdict(location)
    if described.get("file"):
        described["file"] = display_path(described["file"], root)
    return described


def to_dict(report: Report, root: str | None = None) -> dict[str, Any]:
    """The JSON document (schema version 1). The one place that decides its shape. File paths are relative to
    ``root`` (default: the current directory) when the file lies under it, as in every format; the target's absolute
    path is ``target.file_absolute``."""
    facts = report.facts
    target = facts.target
    bench = facts.benchmark
    crash = facts.crash
    return _clean(
        {
            "schema_version": SCHEMA_VERSION,
            "qdoctor_version": report.qdoctor_version,
            "target": {
                "spec": display_path(target.spec, root),
                "file": display_path(target.file, root) if target.file else target.file,
                "file_absolute": os.path.abspath(target.file) if target.file else None,
                "subject": target.subject_name,
                "float_baseline": target.float_name,
                "float_baseline_derived": target.float_derived,
                "inputs": target.inputs_name,
                "inputs_inferred": target.inputs_inferred,
                "inputs_origin": target.inputs_origin,
                "inputs_caveat": target.invented_inputs_caveat(),
                "selection": target.selection,
                "input_shapes": [t.shape for t in target.inputs],
                "quantized": facts.is_quantized,
                "user_stdout": target.user_stdout,
                "user_stderr": target.user_stderr,
                "warnings": target.warnings,
            },
            "environment": asdict(facts.environment),
            "crash": _crash(crash, root) if crash is not None else None,
            "load_crash": _crash(target.load_crash, root) if target.load_crash is not None else None,
            "script_errors": [_crash(error, root) for error in target.script_errors],
            "substitutions": [asdict(sub) for sub in target.substitutions],
            "weights": _weights(facts),
            "report_text": asdict(target.report_text) if target.report_text is not None else None,
            "benchmark": (
                {
                    "subject": _timing(bench.subject),
                    "float": _timing(bench.float_baseline),
                    "speedup": bench.speedup,
                    "speedup_interval": bench.speedup_ratio.as_dict() if bench.speedup_ratio else None,
                    "subject_error": bench.subject_error,
                    "measurement": asdict(facts.measurement) if facts.measurement is not None else None,
                }
                if bench is not None
                else None
            ),
            "size": asdict(facts.size) if facts.size is not None else None,
            "numerics": asdict(facts.numerics) if facts.numerics is not None else None,
            "profile": {
                "subject": asdict(facts.profile) if facts.profile is not None else None,
                "float": asdict(facts.float_profile) if facts.float_profile is not None else None,
            },
            "flow": _flow(facts, root),
            "deploy": _deploy(facts, root),
            "graph": _graph_summary(getattr(facts, "graph", None)),
            "modules": [
                {"path": m.path, "type": m.type, "kind": m.kind, "training": m.training}
                for m in facts.modules or []
                if m.is_leaf and m.path
            ],
            "findings": [
                {
                    "rule": f.rule,
                    "name": f.name,
                    "severity": f.severity.value,
                    "message": f.message,
                    "location": _location(f.location, root),
                    "evidence": f.evidence,
                    "fix": f.fix,
                    "verified": f.verified.to_dict() if f.verified is not None else None,
                    "consequence_of": f.consequence_of,
                }
                for f in report.findings
            ],
            "skipped": [asdict(s) for s in report.skipped],
            "unavailable": facts.unavailable,
            "phase_seconds": facts.phase_seconds,
            "language_model": asdict(facts.language_model) if facts.language_model is not None else None,
            "resources": _resources(facts),
            "trace_files": {name: display_path(path, root) for name, path in facts.trace_files.items()},
            "notes": report.notes,
            **(report.prescription.to_dict() if report.prescription is not None else {}),
            **report.extras,
        }
    )
