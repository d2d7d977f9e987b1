"""QD008 quant-overhead-dominates: a model (or its int8 layers) too small for int8 to pay."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import float_variable, subject_variable
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Benchmarks, Facts

SLOWER = 1.05  # int8 median at least 5 % above the fp32 median ...
OVERHEAD_SHARE = 0.20  # ... and quantize/dequantize + dispatch at least this share of the int8 profile,
SMALL_MODEL_MS = 1.0  # ... or a float model this fast: too little compute per call for int8 to save.
FLOAT_FALLBACK_SHARE = 0.5  # above this the slowness is float fallback (QD005), not overhead


def clearly_slower(bench: Benchmarks) -> bool:
    """Slower by SLOWER beyond noise: the whole interval of the speedup (paired rounds, or the two spreads when the
    timings were not paired) lies below 1 / SLOWER. Within noise, or measured on a busy machine: no verdict."""
    ratio = bench.speedup_ratio
    return ratio is not None and ratio.clearly_below(1.0 / SLOWER)


@rule(
    "QD008",
    "quant-overhead-dominates",
    Severity.WARNING,
    "int8 is slower than fp32 because quantize/dequantize and per-op dispatch outweigh the int8 compute saved",
    needs=("modules", "profile", "benchmark"),
    explains_slowdown=True,
)
def quant_overhead_dominates(facts: Facts) -> Iterator[Finding]:
    bench, profile = facts.benchmark, facts.profile
    assert bench is not None and profile is not None
    if bench.subject is None or bench.float_baseline is None:
        return
    int8_layers = [m for m in facts.modules_of_kind(F.QUANTIZED, F.DYNAMIC_QUANTIZED) if "Packed" not in m.type]
    if not int8_layers or facts.modules_of_kind(F.OBSERVER, F.FAKE_QUANT):
        return  # nothing runs in int8, or observers left in (QD006)
    env = facts.environment
    if env.is_x86 and env.quantized_engine == "qnnpack":
        return  # slow ARM kernels on x86: QD003's case, not overhead
    if not clearly_slower(bench):
        return
    if profile.share(F.CAT_FLOAT) > FLOAT_FALLBACK_SHARE:
        return
    overhead = profile.share(F.CAT_QDQ) + profile.share(F.CAT_OTHER)
    small = bench.float_baseline.median_ms < SMALL_MODEL_MS
    if overhead < OVERHEAD_SHARE and not small:
        return

    layers = _layer_times(facts, [m.path for m in int8_layers])
    not_paying = [layer["module"] for layer in layers if layer["int8_ms"] >= layer["float_ms"]]
    batch = facts.target.inputs[0].shape[0] if facts.target.inputs and facts.target.inputs[0].shape else None
    slowdown = bench.subject.median_ms / bench.float_baseline.median_ms
    evidence: dict = {
        "subject_ms": round(bench.subject.median_ms, 4),
        "float_ms": round(bench.float_baseline.median_ms, 4),
        "slowdown": round(slowdown, 2),
        "quantize_dequantize_share": round(profile.share(F.CAT_QDQ), 3),
        "other_share": round(profile.share(F.CAT_OTHER), 3),
        "int8_kernel_share": round(profile.share(F.CAT_INT8), 3),
        "int8_layers": len(int8_layers),
        "layers_not_paying": not_paying[:8],
        "layer_times_ms": layers[:5],
        "batch": batch,
        "noisy": bench.subject.noisy or bench.float_baseline.noisy,
        "speedup_interval": bench.speedup_ratio.as_dict() if bench.speedup_ratio else None,
    }
    subject, float_name = subject_variable(facts), float_variable(facts)
    keep_float = "\n".join(f"{float_name}.{path}.qconfig = None" for path in not_paying[:6])
    fix = (
        "# int8 is slower than fp32 here: each call pays quantize/dequantize and int8 kernel dispatch,\n"
        "# and these layers are too small for int8 arithmetic to win it back. Either ship the float model:\n"
        f"{subject} = {float_name}\n"
        + (
            "# or keep the layers that do not pay in float (set before prepare(), then calibrate and convert):\n"
            f"{keep_float}\n"
            if keep_float
            else ""
        )
        + "# batching requests (model(torch.cat(requests))) amortizes the fixed costs only when the layers\n"
        + "# are wide enough: measure it (on a 16-32-32-4 MLP, batch 256 was still slower in int8)"
    )
    why = (
        f"quantize/dequantize and other per-op work take {overhead:.0%} of its profile"
        if overhead >= OVERHEAD_SHARE
        else f"the float model runs in {bench.float_baseline.median_ms:.3f} ms, too little compute per call"
    )
    first = min(int8_layers, key=lambda m: m.path)
    ratio = bench.speedup_ratio
    interval = f"; int8 runs at {ratio.low:.2f}-{ratio.high:.2f}x the speed of fp32" if ratio is not None else ""
    yield quant_overhead_dominates.finding(
        f"the int8 model is {slowdown:.2f}x slower than fp32 ({bench.subject.median_ms:.3f} vs "
        f"{bench.float_baseline.median_ms:.3f} ms median{interval}) and {why}"
        + (f" (batch {batch})" if batch else "")
        + ": the model is too small for int8 to pay. Keep it (or its smallest layers) in float, or batch inputs.",
        module=first.path,
        source=first.source,
        evidence=evidence,
        fix=fix,
    )


def _layer_times(facts: Facts, paths: list[str]) -> list[dict]:
    """Per int8 layer: its time in the int8 profile and the same path's time in the float profile."""
    if facts.profile is None or facts.float_profile is None:
        return []
    int8 = {m.path: m.total_ms for m in facts.profile.modules}
    flt = {m.path: m.total_ms for m in facts.float_profile.modules}
    return [
        {"module": p, "int8_ms": round(int8[p], 4), "float_ms": round(flt[p], 4)}
        for p in sorted(paths)
        if p in int8 and p in flt
    ]
