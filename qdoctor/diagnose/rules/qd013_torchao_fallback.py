"""QD013 torchao-fallback: layers quantized with torchao quantize_ that do not get an int8 speed-up where they run:
no int8 kernel, so every call casts the int8 weight back to float for a float matmul; or, in eager mode, an int8
matmul whose per-call activation quantization costs more than it saves. Both are read from the profile."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose import static_steps as static
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.language_model import decode_slowdown
from qdoctor.diagnose.locate import float_variable, subject_variable
from qdoctor.diagnose.registry import from_text, rule
from qdoctor.facts import Facts, ModuleInfo, ModuleTime
from qdoctor.facts import report as R

# Profiler ops that are int8 (or packed low-bit) matmul kernels: a layer running one of these is not falling back.
FAST_KERNELS = (
    "aten::_int_mm",
    "aten::_weight_int8pack_mm",
    "aten::_weight_int4pack_mm",
    "aten::_dyn_quant_matmul_4bit",
    "onednn::",
    "quantized::",
    "torchao::int",
    "torchao::_",
)
FLOAT_MATMULS = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::matmul",
    "aten::linear",
    "aten::convolution",
    "aten::mkldnn_convolution",
    "aten::_convolution",
    "aten::baddbmm",
)
# The weight cast/dequantization that precedes a float matmul
DEQUANT_OPS = ("aten::_to_copy", "aten::copy_", "aten::to", "torchao::dequantize_affine", "aten::dequantize")

FLOAT_MATMUL = "float-matmul"  # evidence["cause"]: no int8 kernel
EAGER_ACTIVATION_QUANT = "eager-activation-quantization"  # int8 kernel, but eager quantization around it dominates
SLOW_INT8_KERNEL = "slow-int8-kernel"  # the int8 kernel alone is slower than the fp32 layer at these shapes

FIX_FLOAT_MATMUL = """\
# Int8WeightOnlyConfig has no CPU int8 kernel for fp32 activations: it saves memory, not time.
# For speed, quantize activations too (int8 x int8 matmul, torch._int_mm) and compile, so that
# Inductor fuses the per-call activation quantization (eager mode pays it op by op):
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
{name} = copy.deepcopy({float})
quantize_({name}, Int8DynamicActivationInt8WeightConfig())
{name} = torch.compile({name})
# or keep weight-only int8 in bfloat16, compiled (Inductor's aten._weight_int8pack_mm takes bf16 only):
# {name} = copy.deepcopy({float}).to(torch.bfloat16)
# quantize_({name}, Int8WeightOnlyConfig()); {name} = torch.compile({name})"""
FIX_COMPILE = """\
{name} = torch.compile({name})  # fuses the activation quantization around the int8 matmul
with torch.no_grad():
    {name}(*example_inputs)  # the first call compiles"""
FIX_DECODE = """\
# eager int8 pays per call around each matmul (the activation row quantized, or the weight dequantized): on one
# token per step that costs more than the int8 arithmetic saves. Compile the model so that Inductor fuses it:
{name} = torch.compile({name})
# or generate with the float model ({float}) and keep int8 where it pays (the prompt, batched requests)"""
DECODE = "decode-step"  # evidence["cause"]: the per-token decode step, not a layer of the profiled prompt
FIX_KEEP_FLOAT = """\
# keep the layers where int8 does not pay in fp32: quantize_ only the others
{name} = copy.deepcopy({float})
quantize_({name}, {config}, filter_fn=lambda module, fqn: isinstance(module, torch.nn.Linear) and fqn not in {slow})"""


def _ops_of(time: ModuleTime) -> tuple[list[str], list[str], list[str]]:
    names = [op.name for op in time.ops]
    fast = [n for n in names if n.startswith(FAST_KERNELS)]
    float_mm = [n for n in names if n in FLOAT_MATMULS]
    dequant = [n for n in names if n.startswith(DEQUANT_OPS)]
    return fast, float_mm, dequant


def _float_time(facts: Facts, path: str) -> float | None:
    if facts.float_profile is None:
        return None
    return next((m.total_ms for m in facts.float_profile.modules if m.path == path), None)


def _diagnose(facts: Facts, time: ModuleTime) -> tuple[str, list[str]] | None:
    fast, float_mm, dequant = _ops_of(time)
    if float_mm and dequant and not fast:
        return FLOAT_MATMUL, float_mm + dequant
    compiled = facts.flow is not None and facts.flow.compiled is not None
    float_ms = _float_time(facts, time.path)
    if not fast or compiled or float_ms is None or time.total_ms <= float_ms:
        return None
    kernel_ms = sum(op.self_ms for op in time.ops if op.name in fast)
    if kernel_ms >= float_ms:  # the int8 matmul alone costs what the whole fp32 layer did
        return SLOW_INT8_KERNEL, fast
    return EAGER_ACTIVATION_QUANT, fast + [op.name for op in time.ops if op.category == F.CAT_QDQ]


@rule(
    "QD013",
    "torchao-fallback",
    Severity.WARNING,
    "torchao-quantized layers with no int8 speed-up here: a float matmul on the dequantized weight, or an eager int8 "
    "matmul slower than fp32",
    needs=("modules", "profile"),
    explains_slowdown=True,
)
def torchao_fallback(facts: Facts) -> Iterator[Finding]:
    profile = facts.profile
    assert profile is not None
    layers: dict[str, ModuleInfo] = {m.path: m for m in facts.modules_of_kind(F.TORCHAO_QUANTIZED)}
    times = {t.path: t for t in profile.modules}
    name, float_name = subject_variable(facts, fallback="model"), float_variable(facts)
    bench = facts.benchmark
    whole = ""
    if bench and bench.subject and bench.float_baseline:
        whole = (
            f" The whole model runs in {bench.subject.median_ms:.2f} ms vs {bench.float_baseline.median_ms:.2f} ms "
            "in fp32."
        )
    yield from _decode_finding(facts, layers, name, float_name)
    for path, info in layers.items():
        time = times.get(path)
        diagnosis = _diagnose(facts, time) if time is not None else None
        if time is None or diagnosis is None:
            continue
        cause, ops = diagnosis
        float_ms = _float_time(facts, path)
        compared = f" ({time.total_ms:.2f} ms per call, {float_ms:.2f} ms as an fp32 {info.type})" if float_ms else ""
        weight = info.weight_tensor_type.rsplit(".", 1)[-1] if info.weight_tensor_type else "tensor-subclass"
        kind = "weight-only int8" if info.activation_quantized is False else "int8"
        evidence = {
            "cause": cause,
            "weight_type": info.weight_tensor_type,
            "weight_storage_dtype": info.weight_storage_dtype,
            "granularity": info.weight_granularity,
            "activation_quantized": info.activation_quantized,
            "profiled_ops": ops,
            "layer_ms": round(time.total_ms, 3),
            "float_layer_ms": round(float_ms, 3) if float_ms is not None else None,
        }
        if bench is not None:
            evidence.update(bench.evidence())
        evidence["int8_kernel_ms"] = round(sum(op.self_ms for op in time.ops if op.name.startswith(FAST_KERNELS)), 3)
        evidence["quantize_ms"] = round(sum(op.self_ms for op in time.ops if op.category == F.CAT_QDQ), 3)
        if cause == FLOAT_MATMUL:
            message = (
                f"`{path}` ({info.type}, {kind} {weight} weight) has no int8 kernel here: each call casts its int8 "
                f"weight to float and runs a float matmul ({', '.join(dict.fromkeys(ops))}){compared}.{whole}"
            )
            fix = FIX_FLOAT_MATMUL.format(name=name, float=float_name)
        elif cause == SLOW_INT8_KERNEL:
            message = (
                f"`{path}` ({info.type}, {kind} {weight} weight) runs an int8 matmul ({', '.join(dict.fromkeys(ops))}, "
                f"{evidence['int8_kernel_ms']:.2f} ms) that is by itself slower than the whole fp32 layer at these "
                f"shapes on this CPU{compared}.{whole}"
            )
            config = (
                "Int8DynamicActivationInt8WeightConfig()" if info.activation_quantized else "Int8WeightOnlyConfig()"
            )
            fix = FIX_KEEP_FLOAT.format(name=name, float=float_name, config=config, slow=repr({path}))
        else:
            message = (
                f"`{path}` ({info.type}, {kind} {weight} weight) runs an int8 matmul, but in eager mode the per-call "
                f"activation quantization around it ({evidence['quantize_ms']:.2f} ms) costs more than the int8 "
                f"matmul saves{compared}.{whole}"
            )
            fix = FIX_COMPILE.format(name=name)
        yield torchao_fallback.finding(message, module=path, source=info.source, evidence=evidence, fix=fix)


def _decode_finding(facts: Facts, layers: dict[str, ModuleInfo], name: str, float_name: str) -> Iterator[Finding]:
    """A causal LM whose torchao int8 decode step is clearly slower than fp32 (qdoctor.diagnose.language_model)."""
    found = decode_slowdown(facts)
    if found is None or not layers:
        return
    first = min(layers.values(), key=lambda m: m.path)
    quantizes_activations = any(m.activation_quantized for m in layers.values())
    per_call = "quantizing the activation row" if quantizes_activations else "dequantizing the weight"
    message = (
        f"{found.text()}: at decode size the per-call work around each of the {len(layers)} torchao int8 matmuls "
        f"({per_call}) costs more than the int8 arithmetic saves."
    )
    evidence = {"cause": DECODE, "activation_quantized": quantizes_activations, **found.evidence()}
    fix = FIX_DECODE.format(name=name, float=float_name)
    yield torchao_fallback.finding(message, module=first.path, source=first.source, evidence=evidence, fix=fix)


# torchao configs whose int8 matmul quantizes the activation on every call: fused by torch.compile, separate eager op
# calls without it (EAGER_ACTIVATION_QUANT, measured on a run)
_PER_CALL_ACTIVATION_CONFIGS = ("Int8DynamicActivationInt8WeightConfig", "int8_dynamic_activation_int8_weight")


@from_text("QD013")
def uncompiled_dynamic_int8_in_text(facts: Facts) -> Iterator[Finding]:
    """The report's text quantizes with torchao's dynamic-activation int8 config and compiles nothing."""
    if static.steps(facts, R.COMPILE):
        return  # a compile anywhere may be this model's under another name
    for step in static.steps(facts, R.TORCHAO):
        if step.detail not in _PER_CALL_ACTIVATION_CONFIGS or not static.unverified(step, facts):
            continue
        model = step.model or "model"
        yield torchao_fallback.finding(
            f"`{step.code}` (line {step.line}) and no torch.compile anywhere in the report: run eagerly, each "
            "quantized Linear quantizes its activation in separate op calls around the int8 matmul, which on CPU "
            "often costs more than the int8 matmul saves, so the model can be slower than fp32 (static: read, not "
            "run).",
            source=static.where(step, facts),
            evidence=static.evidence(step, kind=EAGER_ACTIVATION_QUANT),
            fix=f"{model} = torch.compile({model})  # fuses the activation quantization around torch._int_mm",
            severity=Severity.WARNING,
        )
        return
