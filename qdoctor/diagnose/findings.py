"""What a rule returns: a Finding (rule, severity, message, location, evidence, fix) and a SkippedRule."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from qdoctor.facts.prescription import Verified


class Severity(str, Enum):
    ERROR = "error"  # the model is broken: crashes or gives garbage
    WARNING = "warning"  # the model is much slower or less accurate than it should be
    INFO = "info"  # worth knowing; not by itself a defect

    @property
    def rank(self) -> int:
        return {"error": 3, "warning": 2, "info": 1}[self.value]


@dataclass
class Location:
    module: str | None = None  # module path in the subject ("" is the root), or a graph node name
    file: str | None = None
    line: int | None = None
    code: str | None = None  # the source line


@dataclass
class Finding:
    rule: str  # "QD002"
    name: str  # "missing-quant-stub"
    severity: Severity
    message: str
    location: Location
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""  # code the user can paste
    verified: Verified | None = None  # the measured effect of the fix, once verified (qdoctor.prescribe)
    # A root cause names the codes of the findings it brings about on the same model (a fusion refused in train mode
    # leaves the modules unfused: QD004); those findings are marked ``consequence_of`` its code and are shown as its
    # consequence, not counted as another fault (registry.mark_consequences).
    leads_to: tuple[str, ...] = ()
    consequence_of: str | None = None

    @property
    def consequence_text(self) -> str:
        """ "consequence of QD009" for a finding another one brings about, else ""."""
        return f"consequence of {self.consequence_of}" if self.consequence_of else ""

    def sort_key(self) -> tuple:
        return (-self.severity.rank, self.rule, self.location.module or "", self.location.line or 0, self.message)


@dataclass
class SkippedRule:
    rule: str
    name: str
    reason: str
    # False when the facts it needs cannot exist for this kind of model (graph rules on an eager module tree):
    # human-readable reports leave it out, JSON keeps it.
    applicable: bool = True
