"""QD005 fp32-fallback: float compute between quantized regions, and the int8 -> float -> int8 round trips around it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import fix_engine, float_variable, is_graph_module
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts, TraceEvent

# Severity threshold: a warning when the fallback (float compute between int8 regions plus the quantize/dequantize
# of its round trips) takes at least this share of the quantized model's profiled forward. Justified in
# rules/QD005-fp32-fallback.md: below it, running that part in int8 saves less than the run-to-run noise of a
# latency measurement on a shared CPU.
MATERIAL_SHARE = 0.10

# Torch functions that move or reshape data without computing: they neither count as float compute nor end a region.
SHAPE_FUNCTIONS = {
    "view",
    "reshape",
    "flatten",
    "unflatten",
    "permute",
    "transpose",
    "t",
    "contiguous",
    "squeeze",
    "unsqueeze",
    "expand",
    "expand_as",
    "view_as",
    "reshape_as",
    "narrow",
    "select",
    "split",
    "chunk",
    "unbind",
    "to",
    "clone",
    "detach",
    "type",
    "float",
    "cpu",
    "repeat",
    "flip",
    "movedim",
}
# Elementwise add/mul/cat done in float by hand between a DeQuantStub and a QuantStub: QD011 (missing-float-functional)
# owns those round trips, with FloatFunctional as the fix.
FLOAT_FUNCTIONAL_OPS = {
    "add",
    "__add__",
    "__iadd__",
    "__radd__",
    "mul",
    "__mul__",
    "__imul__",
    "__rmul__",
    "cat",
    "concat",
    "concatenate",
    "stack",
    "add_",
    "mul_",
}
# Module types with an eager-mode int8 kernel (torch.ao.quantization's default static mappings, plus the ops that
# run natively on quantized tensors): a float one between int8 regions could run in int8 instead.
INT8_CAPABLE = {
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Linear",
    "BatchNorm2d",
    "BatchNorm3d",
    "ReLU",
    "ReLU6",
    "Hardswish",
    "ELU",
    "LeakyReLU",
    "PReLU",
    "Sigmoid",
    "Tanh",
    "Hardsigmoid",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "Embedding",
    "EmbeddingBag",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "Upsample",
    "Flatten",
    "Dropout",
    "Identity",
    "Softmax",
    "ConvReLU1d",
    "ConvReLU2d",
    "ConvReLU3d",
    "LinearReLU",
    "BNReLU2d",
    "BNReLU3d",
    "Hardtanh",
}


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _is_bookkeeping(facts: Facts, event: TraceEvent) -> bool:
    if event.kind == "function":
        return _short(event.name) in SHAPE_FUNCTIONS
    info = facts.module(event.module)
    return info is not None and info.kind in (F.OBSERVER, F.FAKE_QUANT)


def _float_compute(event: TraceEvent) -> bool:
    return not event.any_input_quantized and not event.output_quantized and event.any_input_float


def _quantizes(event: TraceEvent) -> bool:
    return not event.any_input_quantized and event.output_quantized


def _dequantizes(event: TraceEvent) -> bool:
    return event.any_input_quantized and not event.output_quantized and bool(event.outputs)


def _label(event: TraceEvent) -> str:
    if event.kind == "module":
        return event.module
    where = f" at line {event.source.line}" if event.source else ""
    return f"{event.name}(){where}"


@dataclass
class RoundTrip:
    """int8 -> float (at ``exit``) -> float compute -> int8 again (at ``entry``)."""

    exit: TraceEvent
    entry: TraceEvent
    float_events: list[TraceEvent] = field(default_factory=list)
    reshapes: list[TraceEvent] = field(default_factory=list)  # data movement only, e.g. Tensor.flatten()


def round_trips(facts: Facts, events: list[TraceEvent]) -> list[RoundTrip]:
    """Walk the traced forward keeping track of whether data is int8 or float.

    The trace records dtypes, not tensor identities: a model whose branches leave and enter int8 independently is
    read as one stream, in call order. The float head before the first QuantStub and the float tail after the last
    DeQuantStub are the model's boundaries, not fallbacks.
    """
    trips: list[RoundTrip] = []
    in_int8 = False
    pending: RoundTrip | None = None
    for event in events:
        if _is_bookkeeping(facts, event):
            if pending is not None and event.kind == "function":
                pending.reshapes.append(event)
            continue
        if _quantizes(event):
            if pending is not None:
                pending.entry = event
                trips.append(pending)
                pending = None
            in_int8 = True
        elif _dequantizes(event):
            if in_int8:
                pending = RoundTrip(exit=event, entry=event)
            in_int8 = False
        elif pending is not None and _float_compute(event):
            pending.float_events.append(event)
    return trips


def _float_functional_only(trip: RoundTrip) -> bool:
    return bool(trip.float_events) and all(
        e.kind == "function" and _short(e.name) in FLOAT_FUNCTIONAL_OPS for e in trip.float_events
    )


@rule(
    "QD005",
    "fp32-fallback",
    Severity.WARNING,
    "float compute between quantized regions: int8 -> float -> int8 round trips and the float ops they feed",
    needs=("modules", "trace"),
    explains_slowdown=True,
)
def fp32_fallback(facts: Facts) -> Iterator[Finding]:
    trace = facts.trace
    assert trace is not None
    trips = [t for t in round_trips(facts, trace.events) if not _float_functional_only(t)]
    if not trips:
        return
    float_events = [e for trip in trips for e in trip.float_events]
    float_modules = [e.module for e in float_events if e.kind == "module"]
    float_functions = [_label(e) for e in float_events if e.kind == "function"]
    [e for trip in trips for e in (trip.exit, trip.entry)]
    evidence: dict = {
        "round_trips": len(trips),
        "float_modules": float_modules,
        "float_functions": float_functions,
        "transitions": [f"{_label(t.exit)} -> {_label(t.entry)}" for t in trips],
    }
    severity = Severity.INFO
    share_text = " Their time share was not measured (no profile)."
    profile = facts.profile
    if profile is not None and profile.total_ms > 0:
        share = fallback_ms(facts, trace.events, trips) / profile.total_ms
        evidence["fallback_ms"] = round(share * profile.total_ms, 3)
        evidence["fallback_share"] = round(share, 3)
        evidence["float_compute_share"] = round(profile.share(F.CAT_FLOAT), 3)
        evidence["quantize_dequantize_share"] = round(profile.share(F.CAT_QDQ), 3)
        severity = Severity.WARNING if share >= MATERIAL_SHARE else Severity.INFO
        share_text = (
            f" They take {share:.0%} of the int8 model's profiled forward "
            f"(float compute {profile.share(F.CAT_FLOAT):.0%}, quantize/dequantize {profile.share(F.CAT_QDQ):.0%} "
            "of the whole)."
        )
    first = trips[0]
    exit_module = first.exit if first.exit.kind == "module" else None
    anchor = next((e for e in first.float_events if e.kind == "module"), exit_module)
    info = facts.module(anchor.module) if anchor is not None else None
    source = info.source if info is not None and info.source else (first.exit.source or None)
    named = float_modules + float_functions
    if named:
        between = f"runs {', '.join(f'`{n}`' for n in named[:6])}{' ...' if len(named) > 6 else ''} in float"
    else:
        reshapes = sorted({_label(e) for t in trips for e in t.reshapes})
        between = f"only reshapes the tensor in between ({', '.join(f'`{n}`' for n in reshapes) or 'nothing'})"
    evidence["reshapes_only"] = not named
    yield fp32_fallback.finding(
        f"{len(trips)} int8 -> float -> int8 round trip(s): the model dequantizes at `{_label(first.exit)}`, "
        f"{between}, and quantizes again at `{_label(first.entry)}`.{share_text}",
        module=info.path if info is not None else None,
        source=source,
        evidence=evidence,
        fix=fallback_fix(facts, float_events) if named else reshape_fix(facts),
        severity=severity,
    )


def _elements(event: TraceEvent) -> int:
    total = 0
    for tensor in event.inputs:
        count = 1
        for size in tensor.shape:
            count *= size
        total += count
    return total


def fallback_ms(facts: Facts, events: list[TraceEvent], trips: list[RoundTrip]) -> float:
    """Profiled time of the round trips: their quantize/dequantize and the float compute between them.

    A module event has its own time in the profile. Torch functions called from forward() (FX's quantize_per_tensor,
    a hand-written dequantize(), torch.sigmoid) do not: the time of their category (quantize/dequantize or float
    compute) left after the modules of that category is shared among those calls in proportion to the elements they
    process, so the model's own input quantize and output dequantize keep their (usually larger) part.
    """
    profile = facts.profile
    assert profile is not None
    times = {m.path: m.total_ms for m in profile.modules}
    in_trips = {id(e) for t in trips for e in (t.exit, t.entry, *t.float_events)}
    compute = [e for e in events if not _is_bookkeeping(facts, e)]
    total = 0.0
    for category, belongs in (
        (F.CAT_QDQ, lambda e: _quantizes(e) or _dequantizes(e)),
        (F.CAT_FLOAT, _float_compute),
    ):
        chosen = [e for e in compute if belongs(e)]
        modules = {e.module for e in chosen if e.kind == "module"}
        total += sum(times.get(p, 0.0) for p in {e.module for e in chosen if e.kind == "module" and id(e) in in_trips})
        functions = [e for e in chosen if e.kind == "function"]
        weight = sum(_elements(e) for e in functions)
        if weight:
            leftover = max(0.0, profile.time_ms(category) - sum(times.get(p, 0.0) for p in modules))
            total += leftover * sum(_elements(e) for e in functions if id(e) in in_trips) / weight
    return total


def fallback_fix(facts: Facts, float_events: list[TraceEvent]) -> str:
    engine, name = fix_engine(facts), float_variable(facts)
    capable = [e.module for e in float_events if e.kind == "module" and _capable(facts, e.module)]
    lines = []
    if capable:
        lines += [
            f"# {', '.join(capable)}: int8 kernels exist. Quantize {'it' if len(capable) == 1 else 'them'} with the "
            "rest of the model:",
            *[
                f'{name}.{p}.qconfig = torch.ao.quantization.get_default_qconfig("{engine}")  # was None'
                for p in capable
            ],
            "# then drop the DeQuantStub/QuantStub pair around it in forward(); prepare, calibrate, convert again",
        ]
    rest = [e for e in float_events if not (e.kind == "module" and _capable(facts, e.module))]
    if rest:
        lines += [
            f"# {', '.join(_label(e) for e in rest)}: no eager-mode int8 kernel. Keep float ops next to each other",
            "# so the model dequantizes once, or replace them with int8-capable ones (Hardswish for SiLU/GELU).",
            "# FX graph mode places the quantize/dequantize pairs itself and keeps only the ones it needs:",
            "from torch.ao.quantization import get_default_qconfig_mapping",
            "from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx",
            f'prepared = prepare_fx({name}.eval(), get_default_qconfig_mapping("{engine}"), example_inputs)',
        ]
    return "\n".join(lines)


def reshape_fix(facts: Facts) -> str:
    """Reshapes run on int8 tensors: the round trip around them is pure overhead."""
    if is_graph_module(facts):
        return (
            "# FX quantizes torch functions it knows and dequantizes around Tensor methods it does not: in forward(),\n"
            "# write x = torch.flatten(x, 1) rather than x = x.flatten(1) (likewise torch.reshape, torch.transpose),\n"
            "# then prepare_fx / calibrate / convert_fx again."
        )
    return (
        "# reshape, view, flatten and permute work on int8 tensors: drop the DeQuantStub/QuantStub pair around them\n"
        "# in forward() and keep the tensor int8 through the reshape."
    )


def _capable(facts: Facts, path: str) -> bool:
    info = facts.module(path)
    return info is not None and info.type in INT8_CAPABLE
