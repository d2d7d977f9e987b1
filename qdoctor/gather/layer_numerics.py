"""Per-layer numerics: where a quantized model's error comes from.

For every quantized layer (and quantize stub) of the subject, its output is compared with its float twin's, on the
example inputs plus the first calibration_data() batches:

- accumulated SQNR: the int8 model up to this layer against the float model up to its twin;
- isolated SQNR: the float twin's own input, quantized with the qparams this layer receives in the subject, fed to
  this layer alone: the error the layer adds by itself;
- weight SQNR (BatchNorm folded into the float twin's weight first), the per-output-channel weight range spread and
  what per-channel int8 weights would give;
- how many of the 256 levels a typical row's output spans at the layer's output scale, and the calibration rows
  whose values reach far beyond the rest (they set the range the observer recorded).

Why forward hooks and not torch.ao.ns's shadow modules / compare_model_outputs: those pair modules by name, so a
fused ConvReLU2d is compared with the float Conv2d before its ReLU and BatchNorm; they cannot feed a layer its
float input quantized with the qparams the subject really gives it; and they do not reach torchao's tensor
subclasses. Here the float twin of a fused layer is found by following the float model's own tensors: the
follower (BatchNorm, ReLU) that consumes the layer's output and is gone from the subject belongs to it. SQNR is
torch.ao.ns.fx.utils.compute_sqnr's definition (10 log10 of signal over noise power), summed over all batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from qdoctor import facts as F
from qdoctor.facts import LayerNumerics, OutlierRow
from qdoctor.introspect.copies import runnable
from qdoctor.introspect.kinds import classify

MAX_CALIBRATION_BATCHES = 8  # calibration_data() batches looked at, at most
# Calibration batches measured: as many as keep the float activations seen under this many elements (counted on the
# example batch; at least one). Deterministic, unlike a time budget on a shared machine: an MLP gets all 8, a
# torchvision resnet50 at 1x3x224x224 gets one or two (see bench/numerics_cost.py).
ELEMENT_BUDGET = 40_000_000
OUTLIER_FACTOR = 8.0  # a row is an outlier at a layer when its max |value| is this many times the median row's
MAX_OUTLIER_ROWS = 8  # per layer
SAMPLE = 200_000  # elements per row kept for range statistics
LAYER_KINDS = (F.QUANTIZED, F.DYNAMIC_QUANTIZED, F.TORCHAO_QUANTIZED, F.QUANT_STUB)
_FOLLOWER_TYPES = (nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.Identity)


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def _float(t: torch.Tensor) -> torch.Tensor:
    return (t.dequantize() if t.is_quantized else t).detach().float()


def _db(signal: float, noise: float) -> float | None:
    if noise == 0.0:
        return math.inf if signal > 0 else None
    if signal == 0.0:
        return None
    return 10.0 * math.log10(signal / noise)


@dataclass
class _Power:
    """SQNR = 10 log10(signal / noise power) of each batch; the median over batches, so that one batch with a
    corrupted row (whose huge values would swamp a sum) does not hide the error on every other batch."""

    per_batch: list[float] = field(default_factory=list)

    def add(self, reference: torch.Tensor, candidate: torch.Tensor) -> None:
        if reference.shape != candidate.shape:
            return
        ref, cand = _float(reference).flatten(), _float(candidate).flatten()
        difference = ref - cand
        value = _db(float(torch.dot(ref, ref)), float(torch.dot(difference, difference)))
        if value is not None:
            self.per_batch.append(value)

    def db(self) -> float | None:
        if not self.per_batch:
            return None
        ordered = sorted(self.per_batch)
        middle = len(ordered) // 2
        value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        return round(value, 2) if math.isfinite(value) else value


@dataclass
class _Layer:
    path: str
    module: nn.Module
    kind: str
    twin: str | None  # float module path at the same place (None: a quant stub, whose float twin is its input)
    accumulated: _Power = field(default_factory=_Power)
    isolated: _Power = field(default_factory=_Power)
    qparams: tuple[float, int, torch.dtype] | None = None  # of the quantized input it receives
    output_qparams: tuple[float, int, torch.dtype] | None = None  # of its output, when that is quantized
    float_path: str | None = None
    row_max: list[tuple[int, int, float]] = field(default_factory=list)  # (batch, row, max |y|), calibration only
    row_span: list[float] = field(default_factory=list)  # max - min of each row's float output (rows that vary)


def _paths(subject: nn.Module, baseline: nn.Module) -> dict[str, str]:
    """subject path -> float path: the same, or under QuantWrapper's ``module.``."""
    float_paths = {p for p, _ in baseline.named_modules()}
    found = {}
    for path, _ in subject.named_modules():
        if path in float_paths:
            found[path] = path
        elif path.startswith("module.") and path[len("module.") :] in float_paths:
            found[path] = path[len("module.") :]
    return found


def _layers(subject: nn.Module, baseline: nn.Module) -> list[_Layer]:
    mapping = _paths(subject, baseline)
    layers = []
    for path, module in subject.named_modules():
        kind = classify(module)
        if not path or kind not in LAYER_KINDS:
            continue
        if kind == F.QUANT_STUB and type(module).__name__ != "Quantize":
            continue  # a QuantStub before convert quantizes nothing
        twin = mapping.get(path) if kind != F.QUANT_STUB else None
        if kind != F.QUANT_STUB and twin is None:
            continue
        layers.append(_Layer(path, module, kind, twin))
    return layers


class _FloatRun:
    """The float baseline run once with hooks on every leaf: the input and output tensors of the leaves a quantized
    layer stands for (``kept``) and of the BatchNorm/ReLU leaves that may follow them; the other leaves' outputs are
    only counted (``elements``), so that a big model's activations are not all held at once."""

    def __init__(self, baseline: nn.Module, kept: set[str]) -> None:
        self.model = baseline
        self.kept = kept
        self.elements = 0  # output elements of every leaf in the last run
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.order: list[str] = []
        self.raw: dict[str, torch.Tensor] = {}  # the output objects themselves, kept alive to follow who reads them
        self.consumed: dict[str, int] = {}  # data_ptr of each leaf's input

    def run(self, batch: tuple[Any, ...]) -> Any:
        """Run the float model on ``batch``; returns its output."""
        self.inputs, self.outputs, self.order, self.raw, self.consumed = {}, {}, [], {}, {}
        self.elements = 0
        handles = []
        for path, module in self.model.named_modules():
            if path and not any(True for _ in module.children()):
                handles.append(module.register_forward_hook(self._hook(path)))
        try:
            with torch.no_grad():
                return self.model(*batch)
        finally:
            for h in handles:
                h.remove()

    def _hook(self, path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            first_in, out = _first_tensor(args), _first_tensor(output)
            if first_in is None or out is None:
                return
            if path not in self.outputs:
                self.elements += out.numel()
            if path not in self.kept and not isinstance(module, _FOLLOWER_TYPES):
                return
            if path not in self.outputs:  # a module called twice: its first call
                # copies: an in-place ReLU or `out += identity` later would change them
                self.inputs[path] = first_in.detach().clone()
                self.outputs[path] = out.detach().clone()
                self.order.append(path)
                self.raw[path] = out
                self.consumed[path] = first_in.data_ptr()

        return hook

    def twin_output(self, path: str, subject_paths: dict[str, nn.Module], prefix: str) -> tuple[str, torch.Tensor]:
        """The float value a subject layer at ``path`` stands for: the output of ``path``, followed through the
        BatchNorm/ReLU leaves that consume it and are gone (or Identity) in the subject."""
        current, value = path, self.outputs[path]
        raw = self.raw.get(path)
        position = self.order.index(path)
        for follower in self.order[position + 1 :]:
            follower_module = self.model.get_submodule(follower)
            if not isinstance(follower_module, _FOLLOWER_TYPES):
                break
            if raw is None or self.consumed.get(follower) != raw.data_ptr():
                break
            in_subject = subject_paths.get(prefix + follower)
            if in_subject is not None and not isinstance(in_subject, nn.Identity):
                break
            current, value, raw = follower, self.outputs[follower], self.raw.get(follower)
        return current, value


def _qparams(t: torch.Tensor) -> tuple[float, int, torch.dtype] | None:
    if t.is_quantized and t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return float(t.q_scale()), int(t.q_zero_point()), t.dtype
    return None


def _subject_run(
    subject: nn.Module, layers: list[_Layer], batch: tuple[Any, ...], on_layer: Callable[[_Layer, Any, Any], None]
) -> tuple[set[str], Any]:
    """Run the subject once; ``on_layer(layer, input, output)`` measures each layer as its first call returns, so that
    no layer's activations outlive it (streamed). Returns the paths of the layers that ran, and the output."""
    seen: set[str] = set()
    by_module = {id(layer.module): layer for layer in layers}
    handles = []

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        layer = by_module[id(module)]
        if layer.path not in seen:
            seen.add(layer.path)  # first: on_layer may run the layer again (isolated), which calls this hook
            on_layer(layer, _first_tensor(args), _first_tensor(output))

    for layer in layers:
        handles.append(layer.module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            output = subject(*batch)
    finally:
        for h in handles:
            h.remove()
    return seen, output


def _isolated(layer: _Layer, float_input: torch.Tensor) -> torch.Tensor | None:
    x = float_input.detach()
    if layer.qparams is not None:
        scale, zero_point, dtype = layer.qparams
        x = torch.quantize_per_tensor(x.float(), scale, zero_point, dtype)
    with torch.no_grad():
        return _first_tensor(layer.module(x))


def _rows(t: torch.Tensor) -> torch.Tensor:
    value = _float(t)
    return value.reshape(value.shape[0], -1) if value.dim() > 1 else value.reshape(1, -1)


def _weights(layer: _Layer, baseline: nn.Module) -> dict[str, Any]:
    module = layer.module
    weight_fn = getattr(module, "weight", None)
    if not callable(weight_fn):
        data = getattr(module, "weight", None)
        quantized = data if isinstance(data, torch.Tensor) else None
    else:
        try:
            quantized = weight_fn()
        except Exception:
            quantized = None
    if not isinstance(quantized, torch.Tensor) or layer.twin is None:
        return {}
    if not quantized.is_quantized and layer.kind != F.TORCHAO_QUANTIZED:
        return {}
    try:
        int8 = quantized.dequantize().float() if quantized.is_quantized else quantized.dequantize().float()
    except Exception:
        return {}
    twin = baseline.get_submodule(layer.twin)
    reference = getattr(twin, "weight", None)
    if not isinstance(reference, torch.Tensor):
        return {}
    reference = reference.detach().float()
    if layer.float_path and layer.float_path != layer.twin:
        follower = baseline.get_submodule(layer.float_path)
        bn = follower if isinstance(follower, nn.modules.batchnorm._BatchNorm) else None
        # a BatchNorm between the twin and the fused ReLU
        for path in _between(baseline, layer.twin, layer.float_path):
            candidate = baseline.get_submodule(path)
            if isinstance(candidate, nn.modules.batchnorm._BatchNorm):
                bn = candidate
        if bn is not None and bn.running_var is not None and bn.running_mean is not None:
            factor = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
            factor = factor / torch.sqrt(bn.running_var + bn.eps)
            reference = reference * factor.reshape([-1] + [1] * (reference.dim() - 1))
    out: dict[str, Any] = {}
    if quantized.is_quantized:
        out["weight_qscheme"] = str(quantized.qscheme())
    if reference.shape == int8.shape:
        power = _Power()
        power.add(reference, int8)
        out["weight_sqnr_db"] = power.db()
        if not quantized.is_quantized:
            # a torchao weight: its granularity is known (per row, per group), and what per-channel int8 would give
            # is asked of per-tensor weights only (QD021); simulating it costs a pass over every weight of an LLM
            return out
        channels = reference.reshape(reference.shape[0], -1).abs().amax(dim=1)
        if reference.shape[0] > 1 and float(channels.median()) > 0:
            out["weight_channel_range_ratio"] = round(float(channels.max() / channels.median()), 2)
            scales = torch.clamp(channels / 127.0, min=1e-12).double()
            per_channel = torch.quantize_per_channel(
                reference, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8
            )
            simulated = _Power()
            simulated.add(reference, per_channel.dequantize())
            out["weight_sqnr_per_channel_db"] = simulated.db()
    return out


def _between(baseline: nn.Module, first: str, last: str) -> list[str]:
    paths = [p for p, _ in baseline.named_modules()]
    if first in paths and last in paths:
        a, b = paths.index(first), paths.index(last)
        return paths[a + 1 : b + 1] if a < b else []
    return []


def calibration_batches(calibration_data: Callable[[], Any] | None, limit: int) -> list[tuple[Any, ...]]:
    """The first ``limit`` batches of the script's calibration_data(), each as a tuple of arguments."""
    if calibration_data is None:
        return []
    batches: list[tuple[Any, ...]] = []
    items: Iterable[Any] = calibration_data()
    for item in items:
        batches.append(tuple(item) if isinstance(item, (tuple, list)) else (item,))
        if len(batches) >= limit:
            break
    return batches


def layer_numerics(
    subject: nn.Module,
    baseline: nn.Module,
    inputs: tuple[Any, ...],
    calibration: list[tuple[Any, ...]],
    element_budget: int = ELEMENT_BUDGET,
    example_outputs: dict[str, Any] | None = None,
) -> tuple[list[LayerNumerics], int, int]:
    """Per-layer numerics over the example inputs then the calibration batches (as many as ``element_budget``
    allows). Returns the
    layers in execution order, the number of batches seen and how many of them were calibration batches."""
    # Hooks are removed after each run and nothing is trained; only a model in train mode (BatchNorm updating its
    # running statistics) would change by running it, so only then is it copied (a copy of a ResNet costs more than
    # measuring it).
    subject, baseline = runnable(subject), runnable(baseline)
    layers = _layers(subject, baseline)
    if not layers:
        return [], 0, 0
    subject_paths = dict(subject.named_modules())
    float_run = _FloatRun(baseline, {layer.twin for layer in layers if layer.twin is not None})
    order: dict[str, int] = {}
    seen_batches = calibration_seen = 0
    allowed = len(calibration)
    for index, batch in enumerate([tuple(inputs), *calibration]):
        if index == 1:  # the size of one batch's activations, on the example, sets how many calibration batches fit
            allowed = max(1, min(len(calibration), element_budget // max(float_run.elements, 1)))
        if index > allowed:
            break
        calibration_index = index - 1  # -1: the example inputs
        float_output = float_run.run(batch)

        def measure(layer: _Layer, got_in: Any, got_out: Any, calibration_index: int = calibration_index) -> None:
            _measure_layer(layer, got_in, got_out, float_run, subject_paths, calibration_index)

        seen, subject_output = _subject_run(subject, layers, batch, measure)
        if index == 0 and example_outputs is not None:  # the outputs on the example inputs: the output SQNR's too
            example_outputs["float"], example_outputs["subject"] = float_output, subject_output
        del float_output, subject_output
        for layer in layers:
            if layer.path in seen:
                order.setdefault(layer.path, len(order))
        seen_batches += 1
        calibration_seen += 1 if calibration_index >= 0 else 0
    result = [_result(layer, baseline) for layer in sorted(layers, key=lambda x: order.get(x.path, 1 << 30))]
    return [r for r in result if r.path in order], seen_batches, calibration_seen


def _measure_layer(
    layer: _Layer,
    got_in: Any,
    got_out: Any,
    float_run: _FloatRun,
    subject_paths: dict[str, nn.Module],
    calibration_index: int,
) -> None:
    """Add one batch's evidence for ``layer``: its output against the float value it stands for, the same layer run
    alone on the float input, and the rows of the float output (ranges and outliers)."""
    if got_out is None:
        return
    if layer.kind == F.QUANT_STUB:
        reference, float_in = got_in, got_in
    else:
        assert layer.twin is not None
        if layer.twin not in float_run.outputs:
            return
        layer.float_path, reference = float_run.twin_output(
            layer.twin, subject_paths, layer.path[: len(layer.path) - len(layer.twin)]
        )
        float_in = float_run.inputs[layer.twin]
    if reference is None or float_in is None:
        return
    if layer.qparams is None and got_in is not None:
        layer.qparams = _qparams(got_in)
    if layer.output_qparams is None:
        layer.output_qparams = _qparams(got_out)
    layer.accumulated.add(reference, got_out)
    try:
        alone = _isolated(layer, float_in)
    except Exception:
        alone = None
    if alone is not None:
        layer.isolated.add(reference, alone)
    rows = _rows(reference)
    for r, values in enumerate(rows):
        values = values[:SAMPLE]
        span = float(values.max() - values.min()) if values.numel() > 1 else 0.0
        if span > 0.0:  # a row of one value, or of one constant, spans no range: no level count from it
            layer.row_span.append(span)
        if calibration_index >= 0:
            layer.row_max.append((calibration_index, r, float(values.abs().max()) if values.numel() else 0.0))


def _scale(layer: _Layer) -> float | None:
    """The step of the quantizer at the layer's output, read from the int8 tensor it returned (a dynamic or torchao
    layer returns float: no step)."""
    return layer.output_qparams[0] if layer.output_qparams is not None else None


def _result(layer: _Layer, baseline: nn.Module) -> LayerNumerics:
    scale = _scale(layer)
    levels = None
    if scale and layer.row_span:
        spans = sorted(layer.row_span)
        levels = float(f"{spans[len(spans) // 2] / scale:.3g}")  # significant digits: a span never reads as 0
    outliers: list[OutlierRow] = []
    if layer.row_max:
        maxima = sorted(m for _, _, m in layer.row_max)
        typical = maxima[len(maxima) // 2]
        if typical > 0:
            flagged = [(b, r, m) for b, r, m in layer.row_max if m > OUTLIER_FACTOR * typical]
            flagged.sort(key=lambda t: -t[2])
            outliers = [
                OutlierRow(batch=b, row=r, max_abs=round(m, 4), typical_max_abs=round(typical, 4))
                for b, r, m in flagged[:MAX_OUTLIER_ROWS]
            ]
    found = LayerNumerics(
        path=layer.path,
        type=type(layer.module).__name__,
        kind=layer.kind,
        float_path=layer.float_path,
        accumulated_sqnr_db=layer.accumulated.db(),
        isolated_sqnr_db=layer.isolated.db(),
        output_scale=scale,
        levels_used=levels,
        outlier_rows=outliers,
    )
    try:
        weights = _weights(layer, baseline)
    except Exception:
        weights = {}
    for name, value in weights.items():
        setattr(found, name, value)
    return found


def why_no_layers(subject: nn.Module) -> str:
    """Why a subject has no layer to measure, in words."""
    from qdoctor.flows import detect
    from qdoctor.introspect.flow import model_flow

    found = model_flow(subject)
    if detect(found).kind.exported_graph:
        return (
            "not measured per layer: a PT2E model is a graph of aten ops with no quantized modules to hook "
            "(its output SQNR is measured)"
        )
    if found.level == 0:
        return "no quantized layer in the subject"
    return "no quantized layer with a float twin at the same path in the float baseline"
