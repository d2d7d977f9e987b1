"""Module inventory: every module's path, kind, qconfig, quantization parameters and creation line."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from qdoctor import facts as F
from qdoctor.facts import ModuleInfo, QConfigInfo, SourceLocation
from qdoctor.introspect.kinds import classify, is_effective_leaf, script_origin, tensor_subclass


def _name(factory: Any) -> str:
    """Class name behind an observer constructor (a class, functools.partial or _PartialWrapper)."""
    target = factory
    for attr in ("p", "func"):  # _PartialWrapper.p is a partial; partial.func is the class
        while hasattr(target, attr) and not isinstance(target, type):
            target = getattr(target, attr)
    return getattr(target, "__name__", type(target).__name__)


def _keywords(factory: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    target = factory
    while target is not None and not isinstance(target, type):
        if hasattr(target, "keywords"):
            kw = {**target.keywords, **kw}
        target = getattr(target, "p", None) or getattr(target, "func", None)
    return kw


def backend_family(weight_qscheme: str | None, reduce_range: bool | None) -> str | None:
    """Which backend's default qconfig these settings match.

    get_default_qconfig: x86/fbgemm use reduce_range=True activations and per-channel weights; qnnpack uses
    reduce_range=False and per-tensor weights; onednn uses reduce_range=False with per-channel weights.
    """
    if weight_qscheme is None:
        return None
    per_channel = "per_channel" in weight_qscheme
    if per_channel and reduce_range:
        return "x86/fbgemm"
    if per_channel and reduce_range is False:
        return "onednn"
    if not per_channel and reduce_range is not True:
        return "qnnpack"
    return None


def qconfig_info(qconfig: Any) -> QConfigInfo | None:
    if qconfig is None:
        return None
    try:
        act = qconfig.activation()
        weight = qconfig.weight()
    except Exception:
        return QConfigInfo(activation=_name(qconfig.activation), weight=_name(qconfig.weight))
    reduce_range = getattr(act, "reduce_range", None)
    w_scheme = str(getattr(weight, "qscheme", "")) or None
    return QConfigInfo(
        activation=type(act).__name__,
        weight=type(weight).__name__,
        activation_dtype=str(getattr(act, "dtype", "")) or None,
        weight_dtype=str(getattr(weight, "dtype", "")) or None,
        weight_qscheme=w_scheme,
        reduce_range=reduce_range,
        backend_family=backend_family(w_scheme, reduce_range),
    )


def _float_or_none(value: Any) -> float | None:
    try:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                return None
            value = value.item()
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _script_weight(module: nn.Module) -> torch.Tensor | None:
    """The int8 weight of a scripted quantized conv/linear, unpacked from its packed params."""
    packed = getattr(module, "_packed_params", None)
    if isinstance(packed, torch.jit.ScriptModule):  # quantized Linear keeps a LinearPackedParams holder
        packed = getattr(packed, "_packed_params", None)
    if packed is None:
        return None
    type_name = str(getattr(packed, "_type", lambda: "")())
    try:
        if "Linear" in type_name:
            return torch.ops.quantized.linear_unpack(packed)[0]
        for dims in ("3d", "2d", "1d"):
            if f"Conv{dims[0]}d" in type_name:
                return getattr(torch.ops.quantized, f"conv{dims}_unpack")(packed)[0]
    except Exception:
        return None
    return None


def _quantized_weight(module: nn.Module) -> torch.Tensor | None:
    if isinstance(module, torch.jit.ScriptModule):
        return _script_weight(module)
    weight = getattr(module, "weight", None)
    try:
        if callable(weight):
            weight = weight()
    except Exception:
        return None
    if isinstance(weight, tuple):
        weight = weight[0]
    return weight if isinstance(weight, torch.Tensor) else None


def _describe_tensor_subclass(info: ModuleInfo, weight: torch.Tensor) -> None:
    """What a torchao quantized weight holds: storage dtype, granularity, whether activations are quantized too."""
    info.weight_tensor_type = tensor_subclass(weight)
    inner = weight
    # older torchao wraps the weight for dynamic activation quantization (LinearActivationQuantizedTensor)
    if hasattr(weight, "original_weight_tensor"):
        info.activation_quantized = True
        inner = weight.original_weight_tensor
    elif hasattr(weight, "act_quant_kwargs"):
        info.activation_quantized = getattr(weight, "act_quant_kwargs", None) is not None
    data = None
    for attr in ("qdata", "int_data", "packed_weight"):
        data = getattr(inner, attr, None)
        if isinstance(data, torch.Tensor):
            break
    if not isinstance(data, torch.Tensor):
        impl = getattr(inner, "tensor_impl", None)
        data = getattr(impl, "int_data", None) if impl is not None else None
    if isinstance(data, torch.Tensor):
        info.weight_storage_dtype = str(data.dtype)
    granularity = getattr(inner, "granularity", None)
    if granularity is not None:
        info.weight_granularity = type(granularity).__name__
    else:
        block = getattr(inner, "block_size", None)
        shape = tuple(getattr(inner, "shape", ()))
        if block is not None and shape and len(block) == len(shape):
            block = tuple(int(b) for b in block)
            if block == shape:
                info.weight_granularity = "PerTensor"
            elif block[-1] == shape[-1] and all(b == 1 for b in block[:-1]):
                info.weight_granularity = "PerRow"
            else:
                info.weight_granularity = f"PerGroup({block[-1]})"


def describe(module: nn.Module, path: str, source: SourceLocation | None) -> ModuleInfo:
    kind = classify(module)
    scripted = script_origin(module)
    info = ModuleInfo(
        path=path,
        type=scripted[1] if scripted else type(module).__name__,
        type_module=scripted[0] if scripted else type(module).__module__,
        kind=kind,
        is_leaf=is_effective_leaf(module),
        training=module.training,
        qconfig=qconfig_info(getattr(module, "qconfig", None)),
        source=source,
    )
    if kind in (F.QUANTIZED, F.QUANT_STUB, F.FLOAT_FUNCTIONAL):
        info.scale = _float_or_none(getattr(module, "scale", None))
        zp = _float_or_none(getattr(module, "zero_point", None))
        info.zero_point = int(zp) if zp is not None else None
    if kind in (F.QUANTIZED, F.DYNAMIC_QUANTIZED, F.QAT, F.FLOAT, F.REFERENCE_QUANTIZED):
        weight = _quantized_weight(module)
        if weight is not None:
            info.weight_dtype = str(weight.dtype)
            if weight.is_quantized:
                info.weight_qscheme = str(weight.qscheme())
    if kind == F.TORCHAO_QUANTIZED:
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor):
            info.weight_dtype = str(weight.dtype)
            _describe_tensor_subclass(info, weight)
    if kind in (F.OBSERVER, F.FAKE_QUANT):
        observer = getattr(module, "activation_post_process", module)
        info.observed_min = _float_or_none(getattr(observer, "min_val", None))
        info.observed_max = _float_or_none(getattr(observer, "max_val", None))
        if kind == F.FAKE_QUANT:
            info.fake_quant_enabled = bool(_float_or_none(getattr(module, "fake_quant_enabled", 1)))
            info.observer_enabled = bool(_float_or_none(getattr(module, "observer_enabled", 1)))
    info.has_observer_attached = hasattr(module, "activation_post_process") and kind not in (F.FAKE_QUANT,)
    info.params = layer_params(module)
    return info


# The shape parameters worth naming, by the attribute that marks the layer family (torch's float, QAT, fused and
# quantized modules share these attribute names).
_LAYER_PARAMS = {
    "kernel_size": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"),
    "in_features": ("in_features", "out_features"),
    "hidden_size": ("input_size", "hidden_size", "num_layers", "bidirectional", "batch_first"),
}


def _plain(value: Any) -> Any:
    """A JSON-friendly copy: tuples become lists, anything exotic its str."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return str(value)


def layer_params(module: nn.Module) -> dict[str, Any]:
    """Convolution, linear and recurrent shape parameters of ``module`` (a fused module: of its first layer)."""
    fused = isinstance(module, nn.Sequential) and ".intrinsic." in type(module).__module__
    layer = next(iter(module.children()), module) if fused else module
    for marker, names in _LAYER_PARAMS.items():
        if hasattr(layer, marker):
            return {name: _plain(getattr(layer, name)) for name in names if hasattr(layer, name)}
    return {}


def is_uncalibrated(info: ModuleInfo) -> bool:
    """An observer that never saw data: min/max still at +inf/-inf."""
    return (
        info.observed_min is not None
        and info.observed_max is not None
        and math.isinf(info.observed_min)
        and math.isinf(info.observed_max)
    )


def inventory(
    model: nn.Module,
    origins: Mapping[nn.Module, SourceLocation],
    reference: nn.Module | None = None,
) -> list[ModuleInfo]:
    """Describe every module of ``model``.

    A module's creation line comes from the float ``reference`` at the same path first (convert replaces modules
    inside torch code, and prepare/deepcopy never call __init__), then from the module itself.
    """
    reference_by_path = dict(reference.named_modules()) if reference is not None else {}
    paths_of: dict[int, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        paths_of.setdefault(id(module), []).append(path)
    result = []
    for path, module in model.named_modules():
        source = None
        ref = reference_by_path.get(path)
        if ref is not None:
            source = origins.get(ref)
        if source is None:
            source = origins.get(module)
        info = describe(module, path, source)
        info.also_at = [p for p in paths_of.get(id(module), []) if p != path]
        result.append(info)
    return result
