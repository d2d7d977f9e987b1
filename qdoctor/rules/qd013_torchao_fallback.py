"""QD013 torchao-fallback: layers quantized with torchao quantize_ whose weight has no int8 kernel on this device,
so every call casts the int8 weight back to float and runs a float matmul (seen in the profile)."""

from __future__ import annotations

from typing import Iterator

from qdoctor import facts as F
from qdoctor.facts import Facts, ModuleInfo, ModuleTime
from qdoctor.registry import rule
from qdoctor.report import Finding, Severity

# Profiler ops that are int8 (or packed low-bit) matmul kernels: a layer running one of these is not falling back.
FAST_KERNELS = (
    "aten::_int_mm", "aten::_weight_int8pack_mm", "aten::_weight_int4pack_mm", "aten::_dyn_quant_matmul_4bit",
    "onednn::", "quantized::", "torchao::", "mkldnn::_linear_pointwise.binary",
)
FLOAT_MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::convolution",
                 "aten::mkldnn_convolution", "aten::_convolution", "aten::baddbmm")
# The weight cast/dequantization that precedes a float matmul
DEQUANT_OPS = ("aten::_to_copy", "aten::copy_", "aten::to", "torchao::dequantize_affine", "aten::dequantize")

FIX_COMPILE = """\
# Inductor fuses the int8 weight cast into an int8 weight-only kernel on CPU: compile the quantized model
{name} = torch.compile({name})
with torch.no_grad():
    {name}(*example_inputs)  # first call compiles"""
FIX_DYNAMIC = """\
# or quantize activations too: the matmul then runs an int8 x int8 kernel (torch._int_mm) even in eager mode
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
quantize_({float}, Int8DynamicActivationInt8WeightConfig())"""


def _falls_back(time: ModuleTime) -> tuple[bool, list[str]]:
    names = [op.name for op in time.ops]
    fast = [n for n in names if n.startswith(FAST_KERNELS)]
    float_mm = [n for n in names if n in FLOAT_MATMULS]
    dequant = [n for n in names if n.startswith(DEQUANT_OPS)]
    return bool(float_mm and dequant and not fast), float_mm + dequant


def _float_time(facts: Facts, path: str) -> float | None:
    if facts.float_profile is None:
        return None
    return next((m.total_ms for m in facts.float_profile.modules if m.path == path), None)


@rule(
    "QD013",
    "torchao-fallback",
    Severity.WARNING,
    "torchao-quantized layers with no int8 kernel on this device: the int8 weight is cast back to float and a "
    "float matmul runs on every call",
    needs=("modules", "profile"),
)
def torchao_fallback(facts: Facts) -> Iterator[Finding]:
    profile = facts.profile
    assert profile is not None
    layers: dict[str, ModuleInfo] = {m.path: m for m in facts.modules_of_kind(F.TORCHAO_QUANTIZED)}
    if not layers:
        return
    times = {t.path: t for t in profile.modules}
    fallbacks: list[tuple[ModuleInfo, ModuleTime, list[str]]] = []
    for path, info in layers.items():
        time = times.get(path)
        if time is None:
            continue
        falls, ops = _falls_back(time)
        if falls:
            fallbacks.append((info, time, ops))
    if not fallbacks:
        return
    name = facts.target.subject_name.removesuffix("()") or "model"
    float_name = (facts.target.float_name or "float_model").removesuffix("()")
    bench = facts.benchmark
    whole = ""
    if bench and bench.subject and bench.float_baseline:
        whole = (
            f" The whole model runs in {bench.subject.median_ms:.2f} ms vs {bench.float_baseline.median_ms:.2f} ms "
            "in fp32."
        )
    weight_only = any(info.activation_quantized is False for info, _, _ in fallbacks)
    fix = FIX_COMPILE.format(name=name) + ("\n" + FIX_DYNAMIC.format(float=float_name) if weight_only else "")
    for info, time, ops in fallbacks:
        float_ms = _float_time(facts, info.path)
        compared = f" ({time.total_ms:.2f} ms per call, {float_ms:.2f} ms as an fp32 Linear)" if float_ms else ""
        evidence = {
            "weight_type": info.weight_tensor_type,
            "weight_storage_dtype": info.weight_storage_dtype,
            "granularity": info.weight_granularity,
            "activation_quantized": info.activation_quantized,
            "profiled_ops": ops,
            "layer_ms": round(time.total_ms, 3),
            "float_layer_ms": round(float_ms, 3) if float_ms is not None else None,
        }
        if bench and bench.subject and bench.float_baseline:
            evidence["subject_ms"] = round(bench.subject.median_ms, 3)
            evidence["float_ms"] = round(bench.float_baseline.median_ms, 3)
        kind = "weight-only int8" if info.activation_quantized is False else "int8"
        yield torchao_fallback.finding(
            f"`{info.path}` ({info.type}, {kind} {info.weight_tensor_type.rsplit('.', 1)[-1] if info.weight_tensor_type else 'tensor subclass'} "
            f"weight) has no int8 kernel here: each call casts its int8 weight to float and runs a float matmul "
            f"({', '.join(dict.fromkeys(ops))}){compared}.{whole}",
            module=info.path,
            source=info.source,
            evidence=evidence,
            fix=fix,
        )
