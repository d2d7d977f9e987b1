"""Automatic fixes, one module per rule code, each registered with ``@transform(code, title)``.

A transform is a pure function ``(FixContext, Finding) -> Fix | CannotApply``: it never runs a model. It says how
the finding shows in the recipe the user followed (``as_written``) and what the recipe becomes once fixed
(``fixed``). qdoctor.prescribe rebuilds both from a copy of the float baseline, measures them and fills
``finding.verified``. Where there is nothing to rebuild from (no float baseline, or a QAT model whose training would
be lost), a transform may instead fix a copy of the subject itself (``on_subject``).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from qdoctor.diagnose.findings import Finding
from qdoctor.facts import Facts

# Flows a recipe can rebuild from the float baseline.
EAGER, FX, DYNAMIC = "eager", "fx", "dynamic"
# Flows that can only be fixed on a copy of the subject (rebuilding would lose QAT training or is not supported).
QAT, OTHER = "qat", "other"


@dataclass(frozen=True)
class RebuildPlan:
    """How a quantized model is built from the float baseline and run. Frozen: a recipe is a cache key."""

    flow: str  # EAGER, FX or DYNAMIC
    engine: str  # torch.backends.quantized.engine at convert and at run time
    qconfig_engine: str  # whose default qconfig: the family the user chose
    stubs: bool = True  # eager: QuantStub/DeQuantStub around the model when it has none
    fuse_activations: bool = True  # eager: fuse ReLU into the Conv/Linear/BN before it (fuse_modules groups)
    fold_bn: bool = True  # eager: fold BatchNorm into the Conv/Linear before it
    calibrate: bool = True
    convert: bool = True
    eval_mode: bool = True  # prepared and run in eval mode (False: training mode, BatchNorm unfolded)
    threads: int | None = None  # intra-op threads at run time; None: as the subject was measured
    dynamic_types: tuple[str, ...] = ()  # dynamic: layer class names the user quantized
    float_layers: tuple[str, ...] = ()  # module paths of the float baseline kept in float (qconfig None)

    def changed(self, **fields: Any) -> RebuildPlan:
        return dataclasses.replace(self, **fields)


@dataclass
class FixContext:
    """What a transform may read: the facts plus the recipe qdoctor inferred from the subject."""

    facts: Facts
    flow: str
    base: RebuildPlan  # the user's evident recipe, before any finding's as_written
    recommended_engine: str
    calibration: str  # where the calibration batches come from, in words
    has_float_baseline: bool
    fusion_groups: list[list[str]] = field(default_factory=list)  # the plan traced on the float baseline
    measured_threads: int = 1  # intra-op threads the subject was measured with


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


@dataclass(frozen=True)
class Transform:
    code: str  # the rule code it fixes
    title: str  # what it does, in a few words ("fuse Conv/BN/ReLU")
    make: TransformFn


_REGISTRY: dict[str, Transform] = {}


def transform(code: str, title: str) -> Callable[[TransformFn], Transform]:
    def register(fn: TransformFn) -> Transform:
        if code in _REGISTRY:
            raise ValueError(f"transform for {code} registered twice")
        registered = Transform(code, title, fn)
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
