"""Hand-built Facts for the rule unit tests in tests/rules/: no model runs, no torch import.

Every builder fills what a real gather would and takes the few fields a test is about; the defaults describe an
x86_64 CPU with VNNI running the x86 engine, and a user script at USER_FILE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding
from qdoctor.diagnose.registry import get_rule
from qdoctor.facts import (
    CategoryTime,
    CrashInfo,
    Environment,
    Facts,
    GraphNode,
    LayerNumerics,
    ModuleInfo,
    ModuleTime,
    Numerics,
    OutlierRow,
    Profile,
    QConfigInfo,
    QParams,
    SourceLocation,
    Target,
    TensorInfo,
    Timing,
    Trace,
    TraceEvent,
)

USER_FILE = "/home/user/model.py"
X86_ISA = ["avx2", "avx512f", "avx512_vnni"]
ARM_ISA = ["asimd", "asimddp"]
X86_QCONFIG = QConfigInfo(
    "HistogramObserver",
    "PerChannelMinMaxObserver",
    weight_qscheme="torch.per_channel_symmetric",
    reduce_range=True,
    backend_family="x86/fbgemm",
)
QNNPACK_QCONFIG = QConfigInfo(
    "HistogramObserver",
    "MinMaxObserver",
    weight_qscheme="torch.per_tensor_symmetric",
    reduce_range=False,
    backend_family="qnnpack",
)
# torch's messages, as users see them
ADD_CRASH = (  # `+` on two int8 tensors in an eager forward()
    "Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend. This could be because the "
    "operator doesn't exist for this backend, or was omitted during the selective/custom build process (if using "
    "custom build). 'aten::add.out' is only available for these backends: [CPU, Meta, ...]."
)
CUDA_CRASH = (  # an eager int8 model on a GPU machine (quantized input on CUDA reaching an eager int8 conv)
    "Could not run 'quantized::conv2d.new' with arguments from the 'QuantizedCUDA' backend. This could be because "
    "the operator doesn't exist for this backend, or was omitted during the selective/custom build process (if "
    "using custom build). 'quantized::conv2d.new' is only available for these backends: [QuantizedCPU, ...]."
)


def run_rule(code: str, facts: Facts) -> list[Finding]:
    """The registered rule's findings on these facts (the rule itself, without run_rules' skip logic)."""
    found = get_rule(code)
    assert found is not None, f"{code} is not registered"
    return list(found.check(facts))


# ------------------------------------------------------------------------------------------------ environment


def env(machine: str = "x86_64", engine: str = "x86", isa: list[str] | None = None, **fields: Any) -> Environment:
    """The machine and torch settings; ``fields`` override any Environment field (cpu_count=4, num_threads=1...)."""
    arm = machine == "aarch64"
    values: dict[str, Any] = dict(
        torch_version="2.14.1",
        python_version="3.11",
        platform="Linux",
        machine=machine,
        cpu_model="test cpu",
        cpu_isa=isa if isa is not None else (ARM_ISA if arm else X86_ISA),
        cpu_capability="DEFAULT" if arm else "AVX512",
        cpu_count=2,
        quantized_engine=engine,
        supported_engines=["qnnpack"] if arm else ["qnnpack", "onednn", "x86", "fbgemm"],
        num_threads=2,
        num_interop_threads=2,
        thread_env={},
    )
    values.update(fields)
    return Environment(**values)


# ------------------------------------------------------------------------------------------------ modules, tensors


def mod(path: str, type_: str, kind: str, *, training: bool = False, line: int | None = None, **fields: Any):
    """One module of the inventory; ``line`` is where the user's file created it."""
    fields.setdefault("is_leaf", kind != F.CONTAINER)
    source = SourceLocation(USER_FILE, line, f"self.{path} = ...") if line else None
    return ModuleInfo(path=path, type=type_, type_module="test", kind=kind, training=training, source=source, **fields)


def qconv(path: str, scale: float = 0.02, zp: int = 3, qscheme: str = "torch.per_channel_affine", type_="Conv2d"):
    """A converted int8 module (Conv2d unless told) with calibrated output qparams unless told."""
    return mod(path, type_, F.QUANTIZED, scale=scale, zero_point=zp, weight_dtype="torch.qint8", weight_qscheme=qscheme)


def f32(shape: Iterable[int] = (1, 8)) -> TensorInfo:
    return TensorInfo("torch.float32", list(shape), False)


def q(shape: Iterable[int] = (1, 8)) -> TensorInfo:
    return TensorInfo("torch.quint8", list(shape), True)


# ------------------------------------------------------------------------------------------------ trace


def mev(path: str, type_: str, inputs: Iterable[TensorInfo], outputs: Iterable[TensorInfo]) -> TraceEvent:
    """A module's forward in the trace."""
    return TraceEvent("module", path, path, type_, list(inputs), list(outputs))


def fev(name: str, module: str, inputs, outputs, line: int | None = None, code: str = "") -> TraceEvent:
    """A torch function called inside ``module``'s forward ("" = the root's), at ``line`` of the user's file."""
    source = SourceLocation(USER_FILE, line, code) if line else None
    return TraceEvent("function", name, module, "function", list(inputs), list(outputs), source)


def crash(
    message: str,
    module: str | None = "",
    line: int | None = 20,
    type_: str = "RuntimeError",
    phase: str = "run",
    code: str = "out += identity",
    traceback: str = "",
) -> CrashInfo:
    """An exception raised at ``line`` of the user's file (no line: raised outside it) while ``module`` ran."""
    return CrashInfo(
        type=type_,
        message=message,
        phase=phase,
        module=module,
        file=USER_FILE if line else None,
        line=line,
        code=code if line else None,
        traceback=traceback,
    )


# ------------------------------------------------------------------------------------------------ measurements


def profile(
    total_ms: float,
    modules: Mapping[str, float] | Iterable[ModuleTime | tuple] = (),
    shares: Mapping[str, float] | None = None,
    runs: int = 1,
) -> Profile:
    """A profile of ``total_ms`` per forward. ``shares`` by category (F.CAT_*); int8 kernels take what the others
    leave unless given. ``modules``: {path: ms}, ModuleTime objects or (path, type, kind, ms) tuples."""
    shares = dict(shares or {})
    shares.setdefault(F.CAT_INT8, max(0.0, 1.0 - sum(shares.values())))
    if isinstance(modules, Mapping):
        module_times = [ModuleTime(p, "", "", ms) for p, ms in modules.items()]
    else:
        module_times = [m if isinstance(m, ModuleTime) else ModuleTime(*m) for m in modules]
    return Profile(
        runs=runs,
        total_ms=total_ms,
        categories=[CategoryTime(c, total_ms * shares.get(c, 0.0), shares.get(c, 0.0)) for c in F.CATEGORIES],
        top_ops=[],
        modules=module_times,
    )


def timing(median: float, iqr: float = 0.0) -> Timing:
    return Timing(median_ms=median, iqr_ms=iqr, runs=20, number_per_run=10, num_threads=4, noisy=False)


# ------------------------------------------------------------------------------------------------ graphs


def node(name, kind, inputs=(), target="", op="call_function", module=None, qparams=None, module_type=None, line=None):
    """One FX/PT2E graph node; ``line`` is the user's line it came from."""
    return GraphNode(
        name=name,
        op=op,
        target=target or name,
        kind=kind,
        inputs=list(inputs),
        module=module,
        qparams=qparams,
        module_type=module_type,
        source=SourceLocation(USER_FILE, line, "") if line else None,
    )


def act(dtype: str = "torch.uint8", qmin: int = 0, qmax: int = 255) -> QParams:
    """Activation qparams (uint8 0..255 unless told)."""
    return QParams(dtype, qmin, qmax)


# ------------------------------------------------------------------------------------------------ facts


def make_facts(
    modules: list[ModuleInfo] | None = None,
    events: list[TraceEvent] | None = None,
    *,
    crash: CrashInfo | None = None,
    load_crash: CrashInfo | None = None,
    output: list[TensorInfo] | None = None,
    script: str = "",
    warnings: list[str] | None = None,
    environment: Environment | None = None,
    sqnr: float | None = None,
    inputs: list[TensorInfo] | None = None,
    **parts: Any,
) -> Facts:
    """Facts of ``quantized_model`` (float baseline ``float_model``) from USER_FILE.

    ``modules`` get a root container unless they hold one (None: no inventory). The trace exists when ``events`` or
    a run ``crash`` is given (``events=[]``: traced, nothing recorded); its output is one float tensor unless told.
    ``parts`` are other Facts fields (profile=, float_profile=, benchmark=, graph=, flow=, float_modules=...)."""
    target = Target(
        spec=USER_FILE,
        file=USER_FILE,
        subject_name="quantized_model",
        float_name="float_model",
        inputs_name="example_inputs",
        inputs_origin="contract",
        inputs=inputs if inputs is not None else [f32()],
        script_text=script,
        warnings=warnings or [],
        load_crash=load_crash,
    )
    if modules is not None and not any(m.path == "" for m in modules):
        modules = [mod("", "Net", F.CONTAINER), *modules]
    trace = None
    if events is not None or crash is not None:
        trace = Trace(events=list(events or []), output=output if output is not None else [f32()], crash=crash)
    return Facts(
        target=target,
        environment=environment or env(),
        modules=modules,
        trace=trace,
        numerics=Numerics(sqnr_db=sqnr) if sqnr is not None else None,
        **parts,
    )


def healthy_chain() -> tuple[list[ModuleInfo], list[TraceEvent]]:
    """A converted eager model that does everything right: quant stub, fused int8 conv, int8 linear, dequant stub."""
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB, scale=0.05, zero_point=60),
        qconv("conv", type_="ConvReLU2d"),
        qconv("fc", type_="Linear"),
        mod("dequant", "DeQuantize", F.DEQUANT_STUB),
    ]
    events = [
        mev("quant", "Quantize", [f32()], [q()]),
        mev("conv", "ConvReLU2d", [q()], [q()]),
        mev("fc", "Linear", [q()], [q()]),
        mev("dequant", "DeQuantize", [q()], [f32()]),
    ]
    return modules, events


def healthy_facts() -> Facts:
    """healthy_chain() traced, profiled (5 % quantize/dequantize) and accurate (SQNR 35 dB): no rule should fire."""
    modules, events = healthy_chain()
    return make_facts(
        modules, events, profile=profile(1.0, {"conv": 0.6, "fc": 0.2}, shares={F.CAT_QDQ: 0.05}), sqnr=35.0
    )


# ------------------------------------------------------------------------------------------------ numerics


def layer(
    path: str, isolated: float | None, *, type_: str = "ConvReLU2d", kind: str = F.QUANTIZED, **fields: Any
) -> LayerNumerics:
    """One layer's numerics: healthy weights (per-channel, 48 dB) and range (120 levels) unless told."""
    values: dict[str, Any] = {
        "accumulated_sqnr_db": isolated,
        "weight_sqnr_db": 48.0,
        "weight_qscheme": "torch.per_channel_affine",
        "weight_channel_range_ratio": 1.1,
        "weight_sqnr_per_channel_db": 48.0,
        "output_scale": 0.02,
        "levels_used": 120.0,
    }
    values.update(fields)
    return LayerNumerics(path=path, type=type_, kind=kind, isolated_sqnr_db=isolated, **values)


def numerics_facts(sqnr: float | None, layers: list[LayerNumerics], **numerics: Any) -> Facts:
    """healthy_facts() with this output SQNR and these per-layer numerics (modules for each layer's path)."""
    facts = healthy_facts()
    known = {m.path for m in facts.modules or []}
    for item in layers:
        if item.path not in known and facts.modules is not None:
            facts.modules.append(mod(item.path, item.type, item.kind, line=10 + len(facts.modules)))
    facts.numerics = Numerics(sqnr_db=sqnr, layers=layers, **numerics)
    return facts


def outlier_row(batch: int, row: int, max_abs: float = 1e4, typical: float = 2.5) -> OutlierRow:
    return OutlierRow(batch=batch, row=row, max_abs=max_abs, typical_max_abs=typical)


def flow_kind(name: str) -> F.FlowKind:
    """The identity of the flow named ``name`` as Facts carry it (qdoctor.flows declares them); "none": NO_FLOW."""
    from qdoctor.flows import flow_named

    return F.NO_FLOW if name == F.NO_FLOW.name else flow_named(name).kind
