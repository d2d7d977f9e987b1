"""Automatic fixes, one module per rule code, each registered with ``@transform(code, title)``.

A transform is a pure function ``(FixContext, Finding) -> Fix | CannotApply``: it never runs a model. It says how
the finding shows in the recipe the user followed (``as_written``) and what the recipe becomes once fixed
(``fixed``). qdoctor.prescribe rebuilds both from a copy of the float baseline, measures them and fills
``finding.verified``. Where there is nothing to rebuild from (no float baseline, or a QAT model whose training would
be lost), a transform may instead fix a copy of the subject itself (``on_subject``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from qdoctor.diagnose.findings import Finding
from qdoctor.facts import NO_FLOW, Facts
from qdoctor.flows import Flow, RebuildPlan


@dataclass
class FixContext:
    """What a transform may read: the facts plus the recipe qdoctor inferred from the subject.

    ``flow`` is the flow that rebuilds the subject from its float baseline (qdoctor.flows.rebuild_flow), None when
    it cannot be rebuilt: a QAT model (``qat``) or one its flow cannot rebuild (a converted PT2E model). Transforms
    ask its traits (``static``, ``places_stubs``, ``fuses_itself``, ``plan_fields``), never its name."""

    facts: Facts
    flow: Flow | None
    qat: bool  # fake-quant or QAT modules: fixed on a copy of the subject, never rebuilt
    subject_flow: Flow | None  # the flow that made the subject (None: a float subject)
    base: RebuildPlan  # the user's evident recipe, before any finding's as_written
    recommended_engine: str
    calibration: str  # where the calibration batches come from, in words
    has_float_baseline: bool
    fusion_groups: list[list[str]] = field(default_factory=list)  # the plan traced on the float baseline
    measured_threads: int = 1  # intra-op threads the subject was measured with

    @property
    def flow_name(self) -> str:
        """The flow in words for a transform's reason: the rebuilding flow, else "QAT" or the subject's flow."""
        if self.flow is not None:
            return self.flow.name
        if self.qat:
            return "QAT"
        return self.subject_flow.name if self.subject_flow is not None else NO_FLOW.name

    def rebuilds_static(self, plan_field: str) -> bool:
        """The subject is rebuilt by a static flow whose rebuild honours ``plan_field`` (a RebuildPlan field)."""
        return self.flow is not None and self.flow.static and plan_field in self.flow.plan_fields


@dataclass
class Fix:
    as_written: dict[str, Any]  # RebuildPlan fields as the user had them (the defect)
    fixed: dict[str, Any]  # RebuildPlan fields once fixed
    repairs_crash: bool = False  # the subject cannot run until this is fixed
    prefer_subject: bool = False  # when the subject runs, verify on a copy of it (exact, no rebuild needed)
    on_subject: Callable[[nn.Module, Any], nn.Module] | None = None  # (copy of subject, batches) -> fixed copy
    subject_code: str = ""  # the code of on_subject; "{subject}" is the subject's name
    details: dict[str, Any] = field(default_factory=dict)  # extra fields for finding.verified


@dataclass
class CannotApply:
    reason: str


class SubjectFixError(Exception):
    """Raised by an on_subject fix that cannot work on this subject; the message is the reason."""


TransformFn = Callable[[FixContext, Finding], "Fix | CannotApply"]
# the layers of a speed/accuracy table (float-model paths, worst first), or None when the finding calls for none
LadderFn = Callable[[FixContext, Finding], "list[str] | None"]


@dataclass(frozen=True)
class Transform:
    code: str  # the rule code it fixes
    title: str  # what it does, in a few words ("fuse Conv/BN/ReLU")
    make: TransformFn
    # its finding also gets the speed/accuracy table: keep the worst 1, 2, 3... layers in float (FallbackLadder)
    ladder: LadderFn | None = None


_REGISTRY: dict[str, Transform] = {}


def transform(code: str, title: str, ladder: LadderFn | None = None) -> Callable[[TransformFn], Transform]:
    def register(fn: TransformFn) -> Transform:
        if code in _REGISTRY:
            raise ValueError(f"transform for {code} registered twice")
        registered = Transform(code, title, fn, ladder)
        _REGISTRY[code] = registered
        return registered

    return register


def all_transforms() -> list[Transform]:
    """Every transform, sorted by code. Importing each module of this package registers its transform."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return [_REGISTRY[c] for c in sorted(_REGISTRY)]


def get_transform(code: str) -> Transform | None:
    return {t.code: t for t in all_transforms()}.get(code.upper())
