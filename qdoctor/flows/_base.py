"""What a flow is: the ``Flow`` strategy and the plain values it takes and returns.

A flow owns five things, each a method or a class attribute of its ``Flow`` subclass:

- detection: ``kind`` (its identity, torch-free, carried by Facts), ``priority`` and ``matches(look)`` over one
  look at a model (qdoctor.introspect.flow.ModelFlow), and ``stage(look)``;
- its rebuild from the float baseline: ``rebuilt_by(look)`` (which flow rebuilds a model it made) and
  ``rebuild(plan, given)``, with the traits verified fixes ask (``static``, ``places_stubs``, ``fuses_itself``,
  ``plan_fields``);
- its `qdoctor compare` recipes: ``recipes(engines)``, ``default_recipes(native, engines)``, ``recipe_rank``,
  ``slow_reason`` and ``build_recipe(recipe, given)``;
- its fix snippets: the code every ``Built`` carries, and ``kind``'s ``convert_code`` / ``keep_float_code`` that
  rules quote;
- how it is lowered and run: ``unavailable(recipe, env)``, ``runtime(built)``, ``compiles_on_first_run``,
  ``model_bytes(built)`` and ``release()``; a flow that lowers to another runtime (``qdoctor check --deploy NAME``)
  names it in ``deploy_target`` and lowers, runs and reads its programs in ``deploy(given)``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from qdoctor import facts as F
from qdoctor.facts import Environment, FlowKind
from qdoctor.facts.deploy import PartitionEdge
from qdoctor.introspect.flow import ModelFlow
from qdoctor.introspect.state import quantized_engine

# How far along its flow a model is (FlowInfo.stage); None when nothing says.
PREPARED, CONVERTED, REFERENCE = "prepared", "converted", "reference"

Batches = Sequence[tuple[Any, ...]]

_OBSERVING_KINDS = {F.OBSERVER, F.FAKE_QUANT, F.QAT}


@dataclass
class Built:
    """A model a flow built from the float baseline (on a copy), with the engine it must run under."""

    model: nn.Module
    engine: str
    steps: list[str] = field(default_factory=list)  # what was done, in words, for the report
    code: str = ""  # the code that does the same to the user's float model


@dataclass
class CodeNames:
    """Names the generated code uses: the defaults are generic; a verified fix passes the user's own."""

    float_model: str = "float_model"
    quantized_model: str = "quantized_model"
    model: str = "model"  # the working copy
    prepared: str = "prepared"
    example_inputs: str = "example_inputs"
    calibration: str | None = None  # the calibration loop; None: iterate `calibration_batches`

    def calibration_loop(self) -> str:
        if self.calibration is not None:
            return self.calibration
        return f"with torch.no_grad():\n    for batch in calibration_batches:\n        {self.prepared}(*batch)"


@dataclass(frozen=True)
class RebuildPlan:
    """How a quantized model is built from the float baseline and run. Frozen: a plan is a cache key.

    Each flow honours the fields in its ``plan_fields``; ``flow`` is None when the model cannot be rebuilt."""

    flow: Flow | None  # the flow that builds it
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
    float_layers: tuple[str, ...] = ()  # float-model paths kept in float (eager: stubs around them; FX: qconfig None)
    weight_per_channel: bool | None = None  # override the qconfig's weight observer; None: the qconfig's own
    calibration_skip: tuple[tuple[int, int], ...] = ()  # (batch, row) of the calibration batches left out

    def changed(self, **fields: Any) -> RebuildPlan:
        return dataclasses.replace(self, **fields)

    @property
    def calibrated(self) -> bool:
        """Calibration batches go into the rebuilt model (a static flow that calibrates)."""
        return self.calibrate and self.flow is not None and self.flow.static


@dataclass
class RebuildInputs:
    """What a rebuild from the float baseline works from (qdoctor.prescribe's verification)."""

    float_model: nn.Module  # the float baseline (a copy without the script's qconfig); flows copy it again
    inputs: tuple[Any, ...]
    batches: Batches  # calibration batches, rows of the plan's calibration_skip already left out
    names: CodeNames  # the user's names for the generated code
    fusion_groups: list[list[str]] = field(default_factory=list)  # the fuse_modules plan traced on the float model


@dataclass(frozen=True)
class Recipe:
    """A `qdoctor compare` recipe: a flow on a quantized engine ("fx-x86"); flow None is the fp32 baseline."""

    name: str
    flow: Flow | None
    engine: str | None
    title: str


@dataclass
class BuildInputs:
    """What a compare recipe is built from."""

    float_model: nn.Module
    inputs: tuple[Any, ...]
    batches: list[tuple[Any, ...]]  # calibration batches
    vnni: bool = True  # the CPU has int8 dot-product instructions (PT2E reduces the range without them)
    fusion_plan: Callable[[], list[list[str]]] = list  # the fuse_modules groups of the float model, traced on demand
    # one sentence on why a built model raised (which op met which tensor, at which line of the model)
    explain_failure: Callable[[BaseException], str] = lambda exc: f"{type(exc).__name__}: {exc}"


@dataclass
class DeployInputs:
    """What a deployment target lowers: the script's quantized model when the flow can take it as is (a converted
    PT2E graph), else the float baseline, which the flow quantizes with its backend's own quantizer."""

    float_model: nn.Module | None
    subject: nn.Module | None  # the script's converted PT2E model, None when it is of another flow
    subject_quantizers: tuple[str, ...]  # the quantizers the script used (class names), when it quantized
    inputs: tuple[Any, ...]
    batches: Batches  # calibration batches
    time_ops: bool = False  # lower each portable op of the int8 program alone too, to time it (DeployedNode.run_alone)


@dataclass
class DeployedNode:
    """One node of a lowered program's top-level graph, outside its delegates (raw, before gathering reads it)."""

    op: str  # ExecuTorch's operator name: "aten_grid_sampler_2d_default"
    stack_trace: str | None  # the export's stack trace of the user's code that produced it
    computes: bool  # it reads a tensor (False: it only makes a constant)
    elements: int  # elements of its output
    run_alone: Callable[[], Any] | None = None  # the op alone, lowered the same way, one call in the runtime


@dataclass
class Lowered:
    """One program a deploying flow lowered and loaded in its runtime."""

    role: str  # qdoctor.facts.deploy.INT8 / FLOAT
    program: bytes  # the serialized program
    run: Callable[[], Any]  # one call in the runtime
    partitions: int
    delegated: dict[str, int]  # op -> delegated nodes
    not_delegated: list[DeployedNode]  # the nodes left to the runtime's own kernels
    edges: list[PartitionEdge]
    quantized_ops: int  # quantize/dequantize nodes, delegated or not (a read .pte: those outside its delegates)
    partitions_by_backend: dict[str, int] = field(default_factory=dict)  # a read .pte: delegate calls per backend id


@dataclass
class Deployed:
    """What a deploying flow made: its programs, in the runtime, and what it could not do."""

    target: str
    backend: str
    runtime: str
    quantizer: str | None
    quantizer_made_for: str | None
    programs: list[Lowered]
    unavailable: dict[str, str] = field(default_factory=dict)
    from_program: bool = False  # read from a serialized program (``read_program``), not lowered here
    inputs: tuple[Any, ...] = ()  # a read program: the random inputs it runs on, of the shapes it records


class SkipRecipe(Exception):
    """The recipe does not apply to this model; the message says why."""


class CapabilityMissing(TypeError):
    """A flow was asked for something it does not do (rebuild, recipes, deploy): its traits say so beforehand
    (``plan_fields``, ``recipes()``, ``deploy_target``), so this is a caller's mistake, never a user's."""


class Flow(abc.ABC):
    """One quantization flow. Subclass it in one module of qdoctor/flows/ and decorate the class with
    ``@register``; the registry instantiates it once."""

    kind: ClassVar[FlowKind]
    priority: ClassVar[int]  # detection order: the first flow (lowest priority) whose matches() is True made it
    # a fixed prescription rebuilt by this flow quantizes activations with calibrated ranges (False: dynamic)
    static: ClassVar[bool] = True
    places_stubs: ClassVar[bool] = True  # the flow places quantize/dequantize itself (eager: the user's QuantStubs)
    fuses_itself: ClassVar[bool] = True  # the flow fuses Conv/BN/ReLU itself (eager: fuse_modules by hand)
    plan_fields: ClassVar[frozenset[str]] = frozenset()  # RebuildPlan fields rebuild() honours; empty: no rebuild
    reference_stage: ClassVar[str] = CONVERTED  # the stage of a model in the q/dq reference form
    recipe_rank: ClassVar[int] = 0  # the order of its recipes in `qdoctor compare`'s catalog
    slow_reason: ClassVar[str | None] = None  # its recipes run only when asked for, and why
    compiles_on_first_run: ClassVar[bool] = False  # the first call of a built model compiles it
    deploy_target: ClassVar[str | None] = None  # `--deploy` name of the runtime it lowers to (None: it does not)
    program_suffix: ClassVar[str | None] = None  # the file suffix of its serialized programs (".pte"), read as targets

    @property
    def name(self) -> str:
        return self.kind.name

    def __repr__(self) -> str:
        return f"<flow {self.name}>"

    # ---- detection

    @abc.abstractmethod
    def matches(self, look: ModelFlow) -> bool:
        """This flow made a model that looks like ``look`` (asked in priority order)."""

    def stage(self, look: ModelFlow) -> str | None:
        """PREPARED, CONVERTED, REFERENCE or None, from the kinds of its modules and graph nodes."""
        if F.NODE_REFERENCE_OP in look.node_kinds or F.REFERENCE_QUANTIZED in look.module_kinds:
            return self.reference_stage
        if look.node_kinds & {F.NODE_QUANTIZED_OP, F.NODE_QUANTIZE} or look.module_kinds & {
            F.QUANTIZED,
            F.DYNAMIC_QUANTIZED,
        }:
            return CONVERTED
        if look.module_kinds & _OBSERVING_KINDS or look.node_kinds & {F.NODE_OBSERVER, F.NODE_FAKE_QUANT}:
            return PREPARED
        return None

    # ---- rebuild from the float baseline

    def rebuilt_by(self, look: ModelFlow) -> Flow | None:
        """The flow that rebuilds a (non-QAT) model this flow made from its float baseline, None when none can.
        Default: itself when it can rebuild, else None; a flow whose models the eager flows rebuild from the float
        baseline returns ``qdoctor.flows.fallback_rebuild(look)`` (torchao, TorchScript)."""
        return self if self.plan_fields else None

    def rebuild(self, plan: RebuildPlan, given: RebuildInputs) -> Built:
        """The quantized model ``plan`` describes, built from a copy of ``given.float_model``."""
        raise CapabilityMissing(f"the {self.name} flow does not rebuild models")

    # ---- compare recipes

    def recipes(self, engines: Sequence[str]) -> list[Recipe]:
        return []

    def default_recipes(self, native: str, engines: Sequence[str]) -> list[str]:
        """Names of its recipes in compare's default selection (``native``: the engine made for this CPU)."""
        return []

    def build_recipe(self, recipe: Recipe, given: BuildInputs) -> Built:
        raise CapabilityMissing(f"the {self.name} flow has no compare recipes")

    # ---- lowering and running

    def unavailable(self, recipe: Recipe, env: Environment) -> str | None:
        """Why ``recipe`` cannot run on this machine or torch build, before anything is built; None when it can."""
        if recipe.engine is not None and recipe.engine not in env.supported_engines:
            return (
                f"engine '{recipe.engine}' is not in torch.backends.quantized.supported_engines "
                f"{env.supported_engines} of this torch build"
            )
        return None

    def runtime(self, built: Built) -> AbstractContextManager[None]:
        """What must be in force while a built model runs: its engine (packed weights belong to it)."""
        return quantized_engine(built.engine) if built.engine else contextlib.nullcontext()

    def model_bytes(self, built: Built) -> int | None:
        """Serialized bytes of a built model when its state_dict does not say (None: measure the state_dict)."""
        return None

    def release(self) -> None:
        """Free what running its models left behind (compiled graphs), once they are measured."""
        return None

    # ---- deployment to another runtime (`--deploy`)

    def deploy(self, given: DeployInputs) -> Deployed:
        """Lower the int8 model and its float baseline for ``deploy_target`` and load both in its runtime."""
        raise CapabilityMissing(f"the {self.name} flow does not deploy")

    def lower(self, role: str, model: nn.Module, inputs: tuple[Any, ...]) -> Lowered:
        """One model (float, or int8 from a PT2E quantizer) exported, lowered for ``deploy_target`` and loaded in its
        runtime, as ``deploy`` lowers each of its programs (`qdoctor compare --deploy` lowers every recipe so)."""
        raise CapabilityMissing(f"the {self.name} flow does not deploy")

    def quantize_for_target(self, given: DeployInputs) -> tuple[nn.Module, str]:
        """``given.float_model`` quantized (on a copy) by the target's own quantizer, and that quantizer in words."""
        raise CapabilityMissing(f"the {self.name} flow does not deploy")

    def read_program(self, data: bytes, time_ops: bool = False) -> Deployed:
        """A serialized program of its runtime (a file ending in ``program_suffix``) read and loaded as it is: one
        program, no float baseline (``time_ops``: the ops left out of its delegates rebuilt alone, to be timed). Raises ImportError when the runtime is not installed, ValueError when ``data``
        is not such a program."""
        raise CapabilityMissing(f"the {self.name} flow reads no program files")
