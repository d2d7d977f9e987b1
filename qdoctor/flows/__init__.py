"""The quantization flows, one module each (eager static, eager dynamic, FX, PT2E, torchao, TorchScript), each a
``Flow`` strategy registered with ``@register``: detection, rebuild from the float baseline, compare recipes, fix
snippets, lowering and running (qdoctor/flows/_base.py says what a flow provides).

The registry discovers every public module of this package (``_``-prefixed modules are the shared interface and
builders): adding a flow is one module here plus its tests, and no code outside this package compares a flow's
name (tests/test_flows_registry.py checks both). Code elsewhere asks a flow for what it needs.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from qdoctor.facts import NO_FLOW, FlowKind
from qdoctor.flows._base import (
    CONVERTED,
    PREPARED,
    REFERENCE,
    Batches,
    BuildInputs,
    Built,
    CodeNames,
    Deployed,
    DeployedNode,
    DeployInputs,
    Flow,
    Lowered,
    RebuildInputs,
    RebuildPlan,
    Recipe,
    SkipRecipe,
)
from qdoctor.flows._building import CALIBRATION_BATCHES, calibrate, calibration_batches, wrap_with_stubs
from qdoctor.introspect.flow import ModelFlow

__all__ = [
    "CALIBRATION_BATCHES",
    "CONVERTED",
    "PREPARED",
    "REFERENCE",
    "Batches",
    "BuildInputs",
    "Built",
    "CodeNames",
    "DeployInputs",
    "Deployed",
    "DeployedNode",
    "Detected",
    "Flow",
    "Lowered",
    "RebuildInputs",
    "RebuildPlan",
    "Recipe",
    "SkipRecipe",
    "all_flows",
    "calibrate",
    "calibration_batches",
    "deploy_flow",
    "deploy_targets",
    "detect",
    "fallback_rebuild",
    "flow_modules",
    "flow_named",
    "program_flow",
    "rebuild_flow",
    "register",
    "wrap_with_stubs",
]

_REGISTRY: dict[str, Flow] = {}
_MODULES: dict[str, str] = {}  # flow name -> the module that registered it
_LOADED = False


def register(cls: type[Flow]) -> type[Flow]:
    """Class decorator: one instance of ``cls`` joins the registry under ``cls.kind.name``."""
    name = cls.kind.name
    if name in _REGISTRY or name == NO_FLOW.name:
        raise ValueError(f"flow {name!r} registered twice (or named like NO_FLOW)")
    _REGISTRY[name] = cls()
    _MODULES[name] = cls.__module__
    return cls


def _load() -> None:
    global _LOADED
    if not _LOADED:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _LOADED = True


def all_flows() -> list[Flow]:
    """Every flow, in detection order. Importing each public module of this package registers its flow."""
    _load()
    return sorted(_REGISTRY.values(), key=lambda f: (f.priority, f.name))


def flow_modules() -> dict[str, str]:
    """Flow name -> the module that registered it (for the registry test)."""
    _load()
    return dict(_MODULES)


def flow_named(name: str) -> Flow:
    """The flow of that name; KeyError for an unknown one (NO_FLOW's name is not a flow)."""
    _load()
    return _REGISTRY[name]


def deploy_targets() -> list[str]:
    """The `--deploy` names: the runtimes a flow lowers to."""
    return sorted(f.deploy_target for f in all_flows() if f.deploy_target is not None)


def deploy_flow(target: str) -> Flow:
    """The flow that lowers to the runtime named ``target`` (`--deploy`); KeyError for an unknown one."""
    found = next((f for f in all_flows() if f.deploy_target == target), None)
    if found is None:
        raise KeyError(f"unknown deployment target {target!r}: one of {', '.join(deploy_targets())}")
    return found


def program_flow(path: str) -> Flow | None:
    """The flow whose runtime's serialized programs end like ``path`` (".pte"), None when none does."""
    suffix = path[path.rfind(".") :].lower() if "." in path else ""
    return next((f for f in all_flows() if f.program_suffix is not None and f.program_suffix == suffix), None)


@dataclass(frozen=True)
class Detected:
    """Which flow made a model (None: no flow, a float model), its identity and how far along it is."""

    flow: Flow | None
    kind: FlowKind
    stage: str | None


def detect(look: ModelFlow) -> Detected:
    """The first flow, in priority order, that matches the look; NO_FLOW when none does."""
    for flow in all_flows():
        if flow.matches(look):
            return Detected(flow, flow.kind, flow.stage(look))
    return Detected(None, NO_FLOW, None)


def fallback_rebuild(look: ModelFlow) -> Flow:
    """The flow that rebuilds a model whose own flow cannot (torchao, TorchScript, a compiled or a float model): the
    eager flows, dynamic when the model holds only dynamic int8 layers."""
    return flow_named("dynamic" if look.dynamic_only else "eager")


def rebuild_flow(look: ModelFlow) -> Flow | None:
    """The flow that rebuilds the model from its float baseline for verified fixes; None when it cannot be rebuilt
    (a QAT model would lose its training; a converted PT2E model): its fixes then work on a copy of it."""
    if look.qat:
        return None
    found = detect(look).flow
    return found.rebuilt_by(look) if found is not None else fallback_rebuild(look)
