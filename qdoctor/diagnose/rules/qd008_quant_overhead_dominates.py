"""QD008 quant-overhead-dominates: a model (or its int8 layers) too small for int8 to pay."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.language_model import decode_slowdown
from qdoctor.diagnose.locate import float_variable, subject_variable
from qdoctor.diagnose.registry import rule
from qdoctor.diagnose.twins import float_twins
from qdoctor.facts import Facts, ModuleInfo

# int8 clearly slower than fp32 (Benchmarks.clearly_slower, by facts.SLOWDOWN) and ...
OVERHEAD_SHARE = 0.20  # ... quantize/dequantize + dispatch at least this share of the int8 profile,
SMALL_MODEL_MS = 1.0  # ... or a float model this fast: too little compute per call for int8 to save.
FLOAT_FALLBACK_SHARE = 0.5  # above this the slowness is float fallback (QD005), not overhead


@dataclass
class Overhead:
    """Why int8 does not pay on this model: the facts QD008 reports (and QD024 asks for)."""

    int8_layers: list[ModuleInfo]
    dynamic: bool  # the int8 layers are dynamically quantized (activations quantized on the fly inside them)
    overhead_share: float  # quantize/dequantize + other per-op work in the int8 profile
    small: bool  # the float model runs under SMALL_MODEL_MS
    layers: list[dict] = field(default_factory=list)  # per int8 layer: its int8 and float twin time
    not_paying: list[str] = field(default_factory=list)  # int8 layers not faster than their float twins


def overhead_dominates(facts: Facts) -> Overhead | None:
    """The slowdown QD008 explains, or None (pure): int8 clearly slower than fp32, and either the per-call overhead
    or the small size of the model (static), or dynamic int8 layers not faster than their float twins (dynamic)."""
    bench, profile = facts.benchmark, facts.profile
    if bench is None or profile is None or bench.subject is None or bench.float_baseline is None:
        return None
    int8_layers = [m for m in facts.modules_of_kind(F.QUANTIZED, F.DYNAMIC_QUANTIZED) if "Packed" not in m.type]
    if not int8_layers or facts.modules_of_kind(F.OBSERVER, F.FAKE_QUANT):
        return None  # nothing runs in int8, or observers left in (QD006)
    env = facts.environment
    if env.is_x86 and env.quantized_engine == "qnnpack":
        return None  # slow ARM kernels on x86: QD003's case, not overhead
    if not bench.clearly_slower():  # by facts.SLOWDOWN beyond noise, the threshold QD024 uses too
        return None
    dynamic = all(m.kind == F.DYNAMIC_QUANTIZED for m in int8_layers)
    # a static model mostly in float compute is QD005's float fallback; a dynamic one computes in float by design
    # (its activations stay float between the int8 GEMMs), so that share says nothing there
    if not dynamic and profile.share(F.CAT_FLOAT) > FLOAT_FALLBACK_SHARE:
        return None
    layers = _layer_times(facts, [m.path for m in int8_layers])
    not_paying = [layer["module"] for layer in layers if layer["int8_ms"] >= layer["float_ms"]]
    found = Overhead(
        int8_layers=int8_layers,
        dynamic=dynamic,
        overhead_share=profile.share(F.CAT_QDQ) + profile.share(F.CAT_OTHER),
        small=bench.float_baseline.median_ms < SMALL_MODEL_MS,
        layers=layers,
        not_paying=not_paying,
    )
    if found.dynamic:
        # Dynamic quantization quantizes activations inside the int8 kernels, so its overhead does not show as a
        # quantize/dequantize share: the evidence is the layers themselves, no faster than in float.
        return found if not_paying else None
    if found.overhead_share < OVERHEAD_SHARE and not found.small:
        return None
    return found


@rule(
    "QD008",
    "quant-overhead-dominates",
    Severity.WARNING,
    "int8 is slower than fp32 because quantize/dequantize and per-op dispatch outweigh the int8 compute saved",
    needs=("modules", "profile", "benchmark"),
    explains_slowdown=True,
)
def quant_overhead_dominates(facts: Facts) -> Iterator[Finding]:
    yield from _decode_finding(facts)
    found = overhead_dominates(facts)
    if found is None:
        return
    bench, profile = facts.benchmark, facts.profile
    assert bench is not None and profile is not None and bench.subject and bench.float_baseline
    batch = _batch(facts)
    slowdown = bench.subject.median_ms / bench.float_baseline.median_ms
    evidence: dict = {
        "subject_ms": round(bench.subject.median_ms, 4),
        "float_ms": round(bench.float_baseline.median_ms, 4),
        "slowdown": round(slowdown, 2),
        "quantize_dequantize_share": round(profile.share(F.CAT_QDQ), 3),
        "other_share": round(profile.share(F.CAT_OTHER), 3),
        "int8_kernel_share": round(profile.share(F.CAT_INT8), 3),
        "int8_layers": len(found.int8_layers),
        "dynamic": found.dynamic,
        "layers_not_paying": found.not_paying[:8],
        "layer_times_ms": found.layers[:5],
        "batch": batch,
        "noisy": bench.subject.noisy or bench.float_baseline.noisy,
        "speedup_interval": bench.speedup_ratio.as_dict() if bench.speedup_ratio else None,
    }
    subject, float_name = subject_variable(facts), float_variable(facts)
    first = min(found.int8_layers, key=lambda m: m.path)
    ratio = bench.speedup_ratio
    interval = f"; int8 runs at {ratio.low:.2f}-{ratio.high:.2f}x the speed of fp32" if ratio is not None else ""
    timing = (
        f"{slowdown:.2f}x slower than fp32 ({bench.subject.median_ms:.3f} vs {bench.float_baseline.median_ms:.3f} ms"
        f" median{interval})"
    )
    if found.dynamic:
        message, fix = _dynamic_finding(facts, found, timing, subject, float_name, batch)
    else:
        message, fix = _static_finding(facts, found, timing, subject, float_name, batch)
    yield quant_overhead_dominates.finding(message, module=first.path, source=first.source, evidence=evidence, fix=fix)


def _static_finding(
    facts: Facts, found: Overhead, timing: str, subject: str, float_name: str, batch: int | None
) -> tuple[str, str]:
    bench = facts.benchmark
    assert bench is not None and bench.float_baseline is not None
    keep_float = "\n".join(f"{float_name}.{path}.qconfig = None" for path in found.not_paying[:6])
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
        f"quantize/dequantize and other per-op work take {found.overhead_share:.0%} of its profile"
        if found.overhead_share >= OVERHEAD_SHARE
        else f"the float model runs in {bench.float_baseline.median_ms:.3f} ms, too little compute per call"
    )
    message = (
        f"the int8 model is {timing} and {why}"
        + (f" (batch {batch})" if batch else "")
        + ": the model is too small for int8 to pay. Keep it (or its smallest layers) in float, or batch inputs."
    )
    return message, fix


def _batch(facts: Facts) -> int | None:
    """The batch size of the first input: dimension 0, or 1 for the (sequence, batch, features) input of a
    recurrent layer without batch_first."""
    inputs = facts.target.inputs
    if not inputs or not inputs[0].shape:
        return None
    shape = inputs[0].shape
    recurrent = [m for m in facts.modules or [] if "hidden_size" in m.params]
    if recurrent and len(shape) == 3 and not recurrent[0].params.get("batch_first", False):
        return shape[1]
    return shape[0]


def _layer_size(info: ModuleInfo | None) -> str:
    """ "LSTM 8->8 (hidden 8)", "Linear 16->4": the shape that makes a layer too small for int8 to pay."""
    if info is None:
        return ""
    p = info.params
    if "hidden_size" in p:
        return f"{info.type} {p.get('input_size')} inputs, hidden {p['hidden_size']}, {p.get('num_layers', 1)} layer(s)"
    if "in_features" in p:
        return f"{info.type} {p['in_features']}->{p['out_features']}"
    return info.type


def _dynamic_finding(
    facts: Facts, found: Overhead, timing: str, subject: str, float_name: str, batch: int | None
) -> tuple[str, str]:
    not_paying = set(found.not_paying)
    paying = [
        m.path for m in found.int8_layers if m.path not in not_paying and m.path in {x["module"] for x in found.layers}
    ]
    named = ", ".join(f"`{p}` ({_layer_size(facts.module(p))})" for p in found.not_paying[:4])
    if paying:
        spec = ", ".join(f'"{p}": torch.ao.quantization.default_dynamic_qconfig' for p in paying)
        fix = (
            "# dynamic int8 does not pay on the small layers: quantize only the layers that got faster\n"
            f"{subject} = torch.ao.quantization.quantize_dynamic({float_name}, {{{spec}}}, dtype=torch.qint8)"
        )
        advice = "Quantize only the larger layers that got faster, keep these in float."
    else:
        fix = (
            "# dynamic int8 does not pay on layers this small: every call quantizes the activations on the fly and\n"
            "# runs int8 GEMMs too small to save anything. Ship the float model:\n"
            f"{subject} = {float_name}"
        )
        advice = "Keep them in float (ship the float model); dynamic quantization pays on large Linear/LSTM layers."
    message = (
        f"the dynamically quantized model is {timing}"
        + (f" at batch {batch}" if batch else "")
        + f": its dynamic int8 layer(s) {named} are no faster than in fp32. Each call quantizes their activations on "
        "the fly and runs int8 GEMMs too small for int8 arithmetic to pay for it. " + advice
    )
    return message, fix


def _layer_times(facts: Facts, paths: list[str]) -> list[dict]:
    """Per int8 layer: its time in the int8 profile and its float twins' time in the float profile."""
    if facts.profile is None or facts.float_profile is None:
        return []
    int8 = {m.path: m.total_ms for m in facts.profile.modules}
    flt = {m.path: m.total_ms for m in facts.float_profile.modules}
    times = []
    for path in sorted(paths):
        twins = float_twins(facts, path) if facts.float_modules else [path]
        if path in int8 and twins and all(t in flt for t in twins):
            times.append(
                {"module": path, "int8_ms": round(int8[path], 4), "float_ms": round(sum(flt[t] for t in twins), 4)}
            )
    return times


def _decode_finding(facts: Facts) -> Iterator[Finding]:
    """A causal LM whose torch.ao dynamic int8 decode step is clearly slower than fp32: one row per matmul, too
    little for the activation quantization inside each dynamic int8 Linear to pay (torchao layers: QD013)."""
    found = decode_slowdown(facts)
    int8_layers = [m for m in facts.modules_of_kind(F.DYNAMIC_QUANTIZED, F.QUANTIZED) if "Packed" not in m.type]
    if found is None or not int8_layers:
        return
    first = min(int8_layers, key=lambda m: m.path)
    subject, float_name = subject_variable(facts), float_variable(facts)
    message = (
        f"{found.text()}: at decode size each of the {len(int8_layers)} int8 Linear layers quantizes a single "
        "activation row per call, which costs more than its int8 matmul saves."
    )
    fix = (
        "# int8 does not pay on one token per step: generate with the float model, and keep int8 where it pays\n"
        "# (the prompt, batched requests), or serve several sequences per step (batch > 1 rows per matmul)\n"
        f"{subject} = {float_name}"
    )
    evidence = {"cause": "decode-step", "int8_layers": len(int8_layers), **found.evidence()}
    yield quant_overhead_dominates.finding(message, module=first.path, source=first.source, evidence=evidence, fix=fix)
