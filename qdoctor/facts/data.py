"""The facts qdoctor gathers once about a target, as plain data.

Rules read these and never recompute them: a rule never runs the model and never touches torch's global state.
Every part that could not be gathered is ``None`` with the reason in ``Facts.unavailable``; a rule that needs it
is reported as skipped with that reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from qdoctor.facts.deploy import Deployment
from qdoctor.facts.flowkind import FlowKind
from qdoctor.facts.kinds import (
    CONTAINER,
    FLOAT,
    NODE_DEQUANTIZE,
    NODE_FAKE_QUANT,
    NODE_FLOAT_OP,
    NODE_OBSERVER,
    NODE_QUANTIZE,
    NODE_QUANTIZED_OP,
    NODE_REFERENCE_OP,
)
from qdoctor.facts.language_model import LanguageModel
from qdoctor.facts.measurement import Benchmarks, Contention
from qdoctor.facts.numerics import Numerics
from qdoctor.facts.profile import Profile
from qdoctor.facts.report import StaticRead
from qdoctor.facts.resources import Resources
from qdoctor.facts.weights import Weights


@dataclass
class SourceLocation:
    file: str
    line: int
    code: str = ""  # the text of that line, stripped


@dataclass
class Environment:
    torch_version: str
    python_version: str
    platform: str
    machine: str  # x86_64, aarch64, ...
    cpu_model: str
    cpu_isa: list[str]  # e.g. ["avx2", "avx512f", "avx512_vnni"]; ARM: ["asimd", "asimddp"]
    cpu_capability: str  # torch.backends.cpu.get_cpu_capability()
    cpu_count: int  # logical CPUs this process may use
    quantized_engine: str  # the engine in force when the user's script finished
    supported_engines: list[str]
    num_threads: int  # torch.get_num_threads() as the user's script left it
    num_interop_threads: int
    thread_env: dict[str, str]  # OMP_NUM_THREADS, MKL_NUM_THREADS, ... when set

    @property
    def is_x86(self) -> bool:
        return self.machine.lower() in ("x86_64", "amd64", "i386", "i686")

    @property
    def is_arm(self) -> bool:
        return self.machine.lower() in ("aarch64", "arm64") or self.machine.lower().startswith("arm")

    @property
    def has_vnni(self) -> bool:
        return any(f in self.cpu_isa for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


@dataclass
class QConfigInfo:
    activation: str  # observer class name, e.g. HistogramObserver
    weight: str
    activation_dtype: str | None = None
    weight_dtype: str | None = None
    weight_qscheme: str | None = None
    reduce_range: bool | None = None
    backend_family: str | None = None  # "x86/fbgemm", "qnnpack", "onednn" or None when it matches none


@dataclass
class ModuleInfo:
    path: str  # "" is the root; "features.0" a child
    type: str  # class name, e.g. QuantizedConv2d
    type_module: str  # module of the class, e.g. torch.ao.nn.quantized.modules.conv
    kind: str  # one of the kinds above
    is_leaf: bool
    training: bool
    qconfig: QConfigInfo | None = None
    scale: float | None = None  # output scale of a quantized module
    zero_point: int | None = None
    weight_dtype: str | None = None
    weight_qscheme: str | None = None
    # observers / fake-quant: what they saw (min/max are inf/-inf before any calibration)
    observed_min: float | None = None
    observed_max: float | None = None
    fake_quant_enabled: bool | None = None
    observer_enabled: bool | None = None
    has_observer_attached: bool = False  # an activation_post_process child or hook (eager prepare)
    source: SourceLocation | None = None  # where the module was created in the user's file
    # Other paths the same module object is registered at (one nn.ReLU reused in several places); named_modules()
    # lists it once, at ``path``.
    also_at: list[str] = field(default_factory=list)
    # torchao quantize_: the weight is a tensor subclass (kind TORCHAO_QUANTIZED)
    weight_tensor_type: str | None = None  # qualified class name, e.g. torchao.quantization.Int8Tensor
    weight_storage_dtype: str | None = None  # dtype of the stored integer data, e.g. torch.int8
    weight_granularity: str | None = None  # e.g. PerRow, PerTensor, PerGroup(32)
    activation_quantized: bool | None = None  # the subclass also quantizes activations (dynamic activation quant)
    # The layer's shape parameters, as the constructor took them: convolutions (in_channels, out_channels,
    # kernel_size, stride, padding, dilation, groups), linear (in_features, out_features), recurrent (input_size,
    # hidden_size, num_layers, bidirectional, batch_first). Empty for other modules.
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TensorInfo:
    dtype: str
    shape: list[int]
    quantized: bool


@dataclass
class TraceEvent:
    """One call recorded while running the subject once: a leaf module or a torch function between modules."""

    kind: str  # "module" or "function"
    name: str  # module path, or the torch function's name ("add", "cat", "Tensor.__add__")
    module: str  # the module path it ran in ("" = the root's forward)
    type: str  # module class name, or "function"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    source: SourceLocation | None = None  # for functions: the user's line that called it

    @property
    def any_input_quantized(self) -> bool:
        return any(t.quantized for t in self.inputs)

    @property
    def any_input_float(self) -> bool:
        return any(not t.quantized and t.dtype.startswith("torch.float") for t in self.inputs)

    @property
    def output_quantized(self) -> bool:
        return any(t.quantized for t in self.outputs)


@dataclass
class CrashInfo:
    type: str
    message: str
    phase: str  # "load" (the script raised) or "run" (the subject raised when qdoctor ran it)
    module: str | None = None  # module path being executed when it raised
    file: str | None = None  # first frame in the user's file, walking the traceback from the raise point
    line: int | None = None
    code: str | None = None
    traceback: str = ""
    # keep-going: a NameError for a name that an earlier statement, which raised, would have bound (that line)
    follows_from: int | None = None


@dataclass
class Trace:
    events: list[TraceEvent]
    output: list[TensorInfo]  # what the model returned
    crash: CrashInfo | None = None  # the subject raised during the traced run


@dataclass
class Sizes:
    subject_bytes: int | None
    float_bytes: int | None


@dataclass
class QParams:
    """Arguments of a quantize/dequantize node: what the quantizer chose for that tensor."""

    dtype: str  # torch.uint8, torch.int8, torch.quint8, ...
    quant_min: int | None = None
    quant_max: int | None = None
    per_channel: bool = False
    is_weight: bool = False  # the quantized value is a parameter (get_attr / packed weight), not an activation


@dataclass
class GraphNode:
    """One node of the subject's graph (FX GraphModule, PT2E/exported program, TorchScript), in execution order.

    ``name`` is the location findings point at: the FX node name (TorchScript: the name of the value it produces,
    with ``module`` the module path it runs in).
    """

    name: str
    op: str  # placeholder, get_attr, call_function, call_method, call_module, output; TorchScript: the node kind
    target: str  # "aten.conv2d.default", "quantized_decomposed.quantize_per_tensor.default", "conv1" (a module)...
    kind: str  # one of the NODE_* kinds (qdoctor.facts.kinds)
    inputs: list[str]  # names of the nodes whose values it reads, in argument order
    module: str | None = None  # module path it belongs to (call_module target, nn_module_stack, TorchScript scope)
    module_type: str | None = None  # class name of that module
    qparams: QParams | None = None  # for quantize/dequantize nodes
    source: SourceLocation | None = None  # the user's line, from the node's stack trace

    @property
    def is_compute(self) -> bool:
        return self.kind in (NODE_QUANTIZED_OP, NODE_REFERENCE_OP, NODE_FLOAT_OP)


@dataclass
class CompileInfo:
    """The subject is a torch.compile'd module (torch._dynamo OptimizedModule)."""

    backend: str | None  # "inductor", "eager", "aot_eager"...; None when it could not be read
    source: SourceLocation | None = None  # the user's torch.compile line
    options: dict[str, Any] = field(default_factory=dict)  # torch.compile(mode=..., options=...) settings
    freezing: bool | None = None  # Inductor freezing in effect for it (options, else config, else environment)
    freezing_source: str = ""  # where that came from
    first_call_s: float | None = None  # one wall-clock measurement of its first call in qdoctor (includes compiling)


@dataclass
class FlowInfo:
    """Which quantization flow produced the subject, and flow-specific facts."""

    kind: FlowKind  # which flow (qdoctor.flows declares them); NO_FLOW when none
    stage: str | None = None  # "prepared", "converted", "reference" (FX reference / PT2E q-dq form), None
    saved_format: str | None = None  # the TARGET was a file: "torchscript", "exported_program", "pickle"
    source: SourceLocation | None = None  # the user's line that produced the subject (convert_pt2e, convert_fx...)
    compiled: CompileInfo | None = None
    quantizers: list[str] = field(default_factory=list)  # PT2E Quantizer classes the script holds (qualified names)
    torchao_version: str | None = None  # when torchao is imported
    notes: list[str] = field(default_factory=list)  # flow facts worth telling (e.g. what a TorchScript file records)
    # FX: the configuration the script gave prepare_fx / prepare_qat_fx / convert_fx (recorded when it ran them, else
    # the QConfigMapping / BackendConfig its globals hold): the BackendConfig's name ("qnnpack", "x86", "native"...)
    # and the mapping's global qconfig (else its most common one), described like a module's qconfig.
    fx_backend_config: str | None = None
    fx_qconfig: QConfigInfo | None = None

    @property
    def flow(self) -> str:
        """The flow's name (the JSON report's ``flow.flow``): for display; rules ask ``kind``'s traits."""
        return self.kind.name


# Where the example inputs came from (Target.inputs_origin). Only "inferred" inputs are made up by qdoctor: a random
# tensor shaped from the first layer, for a workload nobody runs.
INPUTS_CONTRACT = "contract"  # the script's `example_inputs` / `get_example_inputs()`
INPUTS_SCRIPT = "script"  # a tensor the script defined under another name (or captured from its calls)
INPUTS_SAVED = "saved"  # the example inputs saved with the program (an ExportedProgram file)
INPUTS_INFERRED = "inferred"  # invented by qdoctor: not given by the script, not captured from its calls


@dataclass
class Substitution:
    """An offline stand-in used while the script ran (qdoctor.load.standins): what the script asked for that this
    machine cannot give (pretrained weights from the network, a dataset on the reporter's disk, a GPU) and what ran
    instead. Numbers measured with stand-ins are valid for speed, not for accuracy."""

    kind: str  # "pretrained-weights", "hub-model", "checkpoint", "dataset", "cuda"
    requested: str  # what the script asked for: "torchvision resnet50 IMAGENET1K_V1 weights", "ImageFolder('/data')"
    instead: str  # what ran instead: "random weights", "FakeData(64 samples of 3x224x224, 10 classes)", "CPU"
    file: str | None = None
    line: int | None = None


@dataclass
class ScriptText:
    """A target that is a bug report (Markdown or plain text), not a script: which of its lines ran as Python."""

    kind: str  # "markdown" (fenced blocks) or "text" (runs of lines that parse as Python)
    ran: list[tuple[int, int]]  # 1-based inclusive line ranges of the report that ran, in order
    skipped: list[str] = field(default_factory=list)  # lines that look like code but were not run, and why
    stdin: bool = False  # the report was read from standard input
    reindented: list[str] = field(default_factory=list)  # lines that lost their indentation, re-indented by guess


@dataclass
class Target:
    spec: str  # what the user passed
    file: str | None  # the script, when there is one
    subject_name: str  # "quantized_model", "build_model()", ...
    float_name: str | None
    inputs_name: str | None  # None when inputs were inferred
    inputs: list[TensorInfo]
    inputs_inferred: str | None = None  # why and how, when qdoctor made the inputs up
    inputs_origin: str | None = None  # one of the INPUTS_* above; None when the inputs were never chosen
    float_derived: str | None = None  # how a float baseline was derived (e.g. observers stripped)
    selection: list[str] = field(default_factory=list)  # why this subject / float baseline / inputs, when not obvious
    load_crash: CrashInfo | None = None  # the script raised part-way
    user_stdout: str = ""
    user_stderr: str = ""
    warnings: list[str] = field(default_factory=list)  # warnings the script raised (messages, de-duplicated)
    has_calibration_data: bool = False
    has_evaluate: bool = False
    script_text: str = ""  # the user's source, for source-level evidence (thread settings, API calls)
    # Every top-level statement that raised while the script ran statement by statement (keep-going, the default);
    # load_crash is the first of them. Empty with --stop-on-error.
    script_errors: list[CrashInfo] = field(default_factory=list)
    substitutions: list[Substitution] = field(default_factory=list)  # offline stand-ins used (qdoctor.load.standins)
    stopped_lines: list[int] = field(default_factory=list)  # statements stopped at their time budget (keep-going)
    breakpoints_skipped: list[int] = field(default_factory=list)  # debugger breakpoints skipped (load/breakpoints.py)
    # what a statement raised that is no crash of the user's code: a name or package the report leaves out, a download
    # qdoctor cannot make offline (qdoctor.load.left_out), in words; the statement is still marked as not run
    left_out: list[str] = field(default_factory=list)
    report_text: ScriptText | None = None  # the target was a bug report: the lines of it that ran
    report_crashes: list[CrashInfo] = field(default_factory=list)  # tracebacks pasted in the report (phase "report")
    static_read: StaticRead | None = None  # a report's quantization steps read without running (qdoctor.facts.report)

    @property
    def inputs_invented(self) -> bool:
        """qdoctor made the inputs up: timings and per-layer comparisons describe a workload nobody runs."""
        return self.inputs_origin == INPUTS_INFERRED or (self.inputs_origin is None and bool(self.inputs_inferred))

    def invented_inputs_caveat(self) -> str | None:
        """The one sentence every report header and every timing-based finding carries when the inputs were invented."""
        if not self.inputs_invented:
            return None
        shapes = ", ".join("x".join(map(str, t.shape)) for t in self.inputs) or "unknown shape"
        return (
            f"inputs qdoctor invented ({shapes}; the script gives none): timings, profiles and per-layer comparisons "
            "on them describe a workload the script may never run; define `example_inputs` to measure yours"
        )


@dataclass
class Facts:
    target: Target
    environment: Environment
    modules: list[ModuleInfo] | None = None
    float_modules: list[ModuleInfo] | None = None
    trace: Trace | None = None
    profile: Profile | None = None
    float_profile: Profile | None = None
    benchmark: Benchmarks | None = None
    size: Sizes | None = None
    numerics: Numerics | None = None
    graph: list[GraphNode] | None = None  # the subject's graph when it has one (FX, PT2E, TorchScript)
    flow: FlowInfo | None = None
    weights: Weights | None = None  # trained / untrained / unknown, with the reason (qdoctor.facts.weights)
    unavailable: dict[str, str] = field(default_factory=dict)
    # Parts of ``unavailable`` that this kind of model cannot have (an eager module tree has no graph; a TorchScript
    # module takes no hooks to trace): a rule that needs them does not apply, rather than "could not be checked".
    not_applicable: list[str] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each gathering phase (bench/)
    # 1: the script's subject; N: the model treatment round N-1's fixes made (qdoctor.run.treatment)
    treatment_round: int = 1
    measurement: Contention | None = None  # how the benchmark was measured: contention seen, threads, CPUs
    trace_files: dict[str, str] = field(default_factory=dict)  # "subject"/"float": profiler trace written (--trace-dir)
    language_model: LanguageModel | None = (
        None  # a causal LM: prefill and decode timed apart (gather/language_model.py)
    )
    resources: Resources | None = None  # peak memory of the check, by phase, and the model sizes (gather/resources.py)
    deploy: Deployment | None = None  # --deploy: the programs lowered for a runtime, delegation, latencies

    # ---- small conveniences for rules; pure functions of the data above ----
    def module(self, path: str) -> ModuleInfo | None:
        return next((m for m in self.modules or [] if m.path == path), None)

    def modules_of_kind(self, *kinds: str) -> list[ModuleInfo]:
        return [m for m in self.modules or [] if m.kind in kinds]

    @property
    def is_quantized(self) -> bool:
        """The subject holds anything of a quantization flow (quantized modules, observers, fake-quant, qconfig)."""
        return any(m.kind not in (FLOAT, CONTAINER) or m.qconfig is not None for m in self.modules or []) or any(
            n.kind in (NODE_QUANTIZE, NODE_DEQUANTIZE, NODE_QUANTIZED_OP, NODE_OBSERVER, NODE_FAKE_QUANT)
            for n in self.graph or []
        )

    def graph_node(self, name: str) -> GraphNode | None:
        return next((n for n in self.graph or [] if n.name == name), None)

    @property
    def crash(self) -> CrashInfo | None:
        if self.trace and self.trace.crash:
            return self.trace.crash
        return self.target.load_crash

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recommended_engine(env: Environment) -> str:
    """The quantized engine with the fastest int8 kernels for this CPU."""
    if env.is_arm:
        return "qnnpack"
    if "x86" in env.supported_engines:
        return "x86"
    return (
        "fbgemm"
        if "fbgemm" in env.supported_engines
        else (env.supported_engines[-1] if env.supported_engines else "none")
    )
