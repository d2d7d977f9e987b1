"""QD023 slow-int8-layer: an int8 layer that runs clearly slower than the same layer in fp32.

Compares each static int8 layer's profiled time (median and spread over the profiled runs) with the time of its
float twin in the float baseline's profile (qdoctor.diagnose.twins: the same layer, with what fusion folded into
it). A layer is named when the interval of the ratio (widened by the variance between the two profiling sessions,
Profile.between_sd) is above SLOWER and the extra time matters for the model (MIN_EXCESS_SHARE of the float forward).

Other rules (QD024 unexplained-slowdown) ask ``slow_layers(facts)`` whether this rule explains a slowdown.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import float_variable
from qdoctor.diagnose.registry import rule
from qdoctor.diagnose.twins import float_twins, summed_timing
from qdoctor.facts import Facts, Profile, Ratio, Timing, ratio_of

SLOWER = 2.0  # the low end of the ratio's interval: the int8 layer takes at least twice its float twin's time
MIN_EXCESS_SHARE = 0.05  # ... and its extra time is at least this share of the float model's profiled forward
MIN_EXCESS_MS = 0.02  # ... and at least this much per call (below it, per-op overhead is QD008's case)
# ... and at least this many times the slowest module that computes (almost) nothing (noise_floor_ms).
NOISE_FLOOR_FACTOR = 5.0
# A layer with fewer multiply-adds per call than this is slower in int8 because of its size: the fixed cost of
# quantized dispatch and requantization outweighs any arithmetic it saves (QD008's cause, whatever the timings of one
# run say), not because it misses a fast kernel. A 5->5 Linear on one row is 25; the keyword spotter's depthwise
# Conv1d (256 channels, 200 frames, kernel 3) that misses fbgemm's depthwise kernel is 153,600.
TINY_LAYER_MACS = 32_768
# Depthwise Conv1d kernels that, written as a square depthwise Conv2d over a height-1 input, reach fbgemm's fast
# depthwise kernel (measured on torch 2.14, x86 engine: 3x3, 5x5 and 7x7 ran as fast as fp32; 1xk did not).
_SQUARE_FAST_KERNELS = (3, 5, 7)


@dataclass
class SlowLayer:
    module: str  # path in the subject
    type: str
    twins: list[str]  # float baseline paths whose time is the layer's float time
    int8_time: Timing
    float_time: Timing
    ratio: Ratio
    excess_ms: float  # int8 median - float median, per call
    params: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] | None = None

    @property
    def depthwise(self) -> bool:
        groups, channels = self.params.get("groups"), self.params.get("in_channels")
        return bool(groups and groups > 1 and groups == channels)


def _input_shape(facts: Facts, path: str) -> list[int] | None:
    for event in facts.trace.events if facts.trace else []:
        if event.kind == "module" and event.module == path and event.inputs:
            return list(event.inputs[0].shape)
    return None


def _output_elements(facts: Facts, path: str) -> int | None:
    for event in facts.trace.events if facts.trace else []:
        if event.kind == "module" and event.module == path and event.outputs:
            return math.prod(event.outputs[0].shape)
    return None


def layer_macs(facts: Facts, path: str, params: dict[str, Any]) -> int | None:
    """Multiply-adds of one call of a Linear or convolution layer, from its traced output and its parameters (None
    when either is unknown): output elements x the inputs each one sums over."""
    outputs = _output_elements(facts, path)
    if outputs is None:
        return None
    if isinstance(params.get("in_features"), int):
        return outputs * int(params["in_features"])
    kernel, channels, groups = params.get("kernel_size"), params.get("in_channels"), params.get("groups") or 1
    if isinstance(kernel, list) and isinstance(channels, int) and isinstance(groups, int) and groups > 0:
        return outputs * (channels // groups) * math.prod(int(k) for k in kernel)
    return None


def forward_ms(profile: Profile) -> float:
    """A forward pass's time from the median of each module's runs (a run the machine stalled in counts once, not in
    the total); the profile's mean total when modules have no per-run times."""
    medians = [t.median_ms for t in (m.timing() for m in profile.innermost_modules()) if t is not None]
    return sum(medians) if medians else profile.total_ms


def noise_floor_ms(facts: Facts) -> float:
    """The slowest median, in either profile, of the modules that compute (almost) nothing: an Identity left by
    fusion, the quantize/dequantize stubs. A machine that descheduled the process, or int8 kernels waiting for a
    preempted thread, make those take milliseconds too."""
    idle = []
    for profile in (facts.profile, facts.float_profile):
        for measured in profile.modules if profile else []:
            if measured.type == "Identity" or measured.kind in (F.QUANT_STUB, F.DEQUANT_STUB):
                timing = measured.timing()
                if timing is not None:
                    idle.append(timing.median_ms)
    return max(idle, default=0.0)


def slow_layers(facts: Facts) -> list[SlowLayer]:
    """The static int8 layers clearly slower than their float twins, slowest excess first (pure; needs both
    profiles with per-run times)."""
    profile, float_profile = facts.profile, facts.float_profile
    if profile is None or float_profile is None or not facts.float_modules:
        return []
    env = facts.environment
    if env.is_x86 and env.quantized_engine == "qnnpack":
        return []  # ARM kernels on x86 make every int8 layer slow: QD003's cause, not a layer's shape
    int8_times = {m.path: m for m in profile.modules}
    float_times = {m.path: m for m in float_profile.modules}
    min_excess = max(
        MIN_EXCESS_MS, MIN_EXCESS_SHARE * forward_ms(float_profile), NOISE_FLOOR_FACTOR * noise_floor_ms(facts)
    )
    found, compared = [], 0
    for info in facts.modules_of_kind(F.QUANTIZED):
        measured = int8_times.get(info.path)
        twins = float_twins(facts, info.path)
        if measured is None or not twins or any(t not in float_times for t in twins):
            continue
        int8, flt = measured.timing(), summed_timing([float_times[t] for t in twins])
        if int8 is None or flt is None:
            continue
        # the two profiles are separate sessions: their ratio varies between sessions beyond the runs' own spreads
        # (a loaded run named a layer that quiet runs never did)
        plain = ratio_of(int8, flt)
        ratio = plain.across_sessions(max(profile.between_sd, float_profile.between_sd)) if plain else None
        excess = int8.median_ms - flt.median_ms
        compared += 1
        if ratio is None or not ratio.clearly_above(SLOWER):
            continue
        if excess < min_excess:
            continue
        macs = layer_macs(facts, info.path, info.params)
        if macs is not None and macs < TINY_LAYER_MACS:
            continue  # too small for int8 to pay: size is the cause (QD008), not a missed kernel
        found.append(
            SlowLayer(
                info.path, info.type, twins, int8, flt, ratio, excess, info.params, _input_shape(facts, info.path)
            )
        )
    if compared > 1 and len(found) == compared:
        # Every int8 layer slower than fp32 is not a shape that misses a kernel: the int8 kernels as a whole ran slow
        # (threads waiting for cores taken by other processes, QD010; the wrong engine, QD003).
        return []
    return sorted(found, key=lambda s: -s.excess_ms)


def explained_ms(facts: Facts) -> float:
    """Per-call time the slow int8 layers add over their float twins (0.0 when none): how much of a slowdown this
    rule explains."""
    return sum(s.excess_ms for s in slow_layers(facts))


def _one(value: Any) -> Any:
    """(3,) -> 3, (3, 3) -> 3, (1, 2) -> "1x2"."""
    if isinstance(value, list):
        if len(set(value)) == 1:
            return value[0]
        return "x".join(str(v) for v in value)
    return value


def describe_layer(layer: SlowLayer) -> str:
    """ "Conv1d, depthwise, 256 channels, kernel 3, stride 1, padding 1, groups 256, input 1x256x200"."""
    p = layer.params
    base = layer.type
    for fused in ("ConvBnReLU", "ConvReLU", "ConvBn", "LinearReLU"):
        if base.startswith(fused):
            base = "Conv" + base[len(fused) :] if fused.startswith("Conv") else "Linear"
            break
    parts = [base]
    if "kernel_size" in p:
        if layer.depthwise:
            parts.append("depthwise")
        channels = f"{p['in_channels']} channels" if p.get("in_channels") == p.get("out_channels") else None
        parts.append(channels or f"{p.get('in_channels')}->{p.get('out_channels')} channels")
        parts += [f"kernel {_one(p['kernel_size'])}", f"stride {_one(p.get('stride'))}"]
        parts += [f"padding {_one(p.get('padding'))}", f"dilation {_one(p.get('dilation'))}", f"groups {p['groups']}"]
    elif "in_features" in p:
        parts.append(f"{p['in_features']}->{p['out_features']} features")
    if layer.input_shape:
        parts.append("input " + "x".join(str(d) for d in layer.input_shape))
    return ", ".join(parts)


def square_kernel_rewrite(layer: SlowLayer) -> int | None:
    """The kernel size k when the layer is a depthwise Conv1d that a k x k depthwise Conv2d over a height-1 input
    computes exactly and fast; None when no known shape change restores the fast kernel."""
    p = layer.params
    kernel = p.get("kernel_size")
    if not layer.depthwise or not isinstance(kernel, list) or len(kernel) != 1:
        return None
    if kernel[0] not in _SQUARE_FAST_KERNELS or p.get("dilation") != [1]:
        return None
    return int(kernel[0])


SQUARE_KERNEL_FIX = """\
# int8 depthwise Conv1d misses fbgemm's fast depthwise kernel; a {k}x{k} depthwise Conv2d over a height-1 input
# computes the same thing (weights in the middle row, zeros elsewhere) and takes the fast kernel:
class DepthwiseConv1dAs2d(nn.Module):
    def __init__(self, conv1d):
        super().__init__()
        k = conv1d.kernel_size[0]
        self.conv = nn.Conv2d(conv1d.in_channels, conv1d.out_channels, (k, k), stride=(1, conv1d.stride[0]),
                              padding=(k // 2, conv1d.padding[0]), groups=conv1d.groups, bias=conv1d.bias is not None)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :, k // 2, :] = conv1d.weight
            if conv1d.bias is not None:
                self.conv.bias.copy_(conv1d.bias)

    def forward(self, x):
        return self.conv(x.unsqueeze(2)).squeeze(2)

# before fuse_modules/prepare (leave this layer out of fuse_modules: its ReLU then runs on int8 by itself):
{float_name}.{twin} = DepthwiseConv1dAs2d({float_name}.{twin})"""

KEEP_FLOAT_FIX = """\
# Keep {twin} in float (set before prepare(), then calibrate and convert as before). Eager mode needs the
# dequantize/quantize around it; FX mode (prepare_fx) inserts them by itself:
from torch.ao.quantization import DeQuantStub, QuantStub
{float_name}.{twin} = nn.Sequential(DeQuantStub(), {float_name}.{twin}, QuantStub())
{float_name}.{twin}[1].qconfig = None
# FX mode instead: qconfig_mapping.set_module_name("{twin}", None)"""


@rule(
    "QD023",
    "slow-int8-layer",
    Severity.WARNING,
    "an int8 layer runs clearly slower than the same layer in fp32 (it misses the fast int8 kernel)",
    needs=("modules", "float_modules", "profile", "float_profile"),
    explains_slowdown=True,
)
def slow_int8_layer(facts: Facts) -> Iterator[Finding]:
    layers = slow_layers(facts)
    if not layers:
        return
    assert facts.profile is not None and facts.float_profile is not None
    total_excess = sum(s.excess_ms for s in layers)
    float_name = float_variable(facts)
    for layer in layers:
        twin = layer.twins[0]
        k = square_kernel_rewrite(layer)
        fix = (
            SQUARE_KERNEL_FIX.format(k=k, float_name=float_name, twin=twin) + "\n# or:\n" if k is not None else ""
        ) + KEEP_FLOAT_FIX.format(float_name=float_name, twin=twin)
        info = facts.module(layer.module)
        float_info = next((m for m in facts.float_modules or [] if m.path == twin), None)
        source = (info.source if info else None) or (float_info.source if float_info else None)
        others = len(layers) - 1
        message = (
            f"int8 layer `{layer.module}` ({describe_layer(layer)}) takes {layer.int8_time.median_ms:.3f} ms per call "
            f"against {layer.float_time.median_ms:.3f} ms in fp32: {layer.ratio.text()} slower"
            + (
                f"; with {others} other slow layer(s) it adds {total_excess:.2f} ms per call, "
                if others
                else f"; it adds {layer.excess_ms:.2f} ms per call, "
            )
            + f"{min(1.0, total_excess / forward_ms(facts.profile)):.0%} of the int8 model's profiled time. "
            + (
                f"A depthwise Conv1d misses the fast int8 depthwise kernel: write it as a {k}x{k} depthwise Conv2d, "
                "or keep it in float."
                if k is not None
                else "It misses the fast int8 kernel for this shape: keep it in float."
            )
        )
        yield slow_int8_layer.finding(
            message,
            module=layer.module,
            source=source,
            evidence={
                "int8_ms": round(layer.int8_time.median_ms, 4),
                "int8_iqr_ms": round(layer.int8_time.iqr_ms, 4),
                "float_ms": round(layer.float_time.median_ms, 4),
                "float_iqr_ms": round(layer.float_time.iqr_ms, 4),
                "ratio": round(layer.ratio.value, 2),
                "ratio_low": round(layer.ratio.low, 2),
                "ratio_high": round(layer.ratio.high, 2),
                "runs": layer.int8_time.runs,
                "excess_ms": round(layer.excess_ms, 4),
                "slow_layers_excess_ms": round(total_excess, 4),
                "float_twins": layer.twins,
                "params": layer.params,
                "input_shape": layer.input_shape,
                "shape_change": f"depthwise Conv2d {k}x{k} over a height-1 input" if k is not None else None,
            },
            fix=fix,
        )
