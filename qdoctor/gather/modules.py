"""Module inventory: every module's path, kind, qconfig, quantization parameters and creation line."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from qdoctor import facts as F
from qdoctor.facts import ModuleInfo, QConfigInfo, SourceLocation

_QUANTIZED_PREFIXES = (
    "torch.ao.nn.quantized.modules",
    "torch.ao.nn.intrinsic.quantized.modules",
    "torch.ao.nn.quantizable",  # quantizable LSTM/MHA after convert hold quantized children
    "torch.nn.quantized",
    "torch.nn.intrinsic.quantized",
)
_DYNAMIC_PREFIXES = ("torch.ao.nn.quantized.dynamic", "torch.ao.nn.intrinsic.quantized.dynamic", "torch.nn.quantized.dynamic")
_REFERENCE_PREFIXES = ("torch.ao.nn.quantized.reference",)
_QAT_PREFIXES = ("torch.ao.nn.qat", "torch.ao.nn.intrinsic.qat", "torch.nn.qat", "torch.nn.intrinsic.qat")


def classify(module: nn.Module) -> str:
    """The kind of a module (see qdoctor.facts): quantized, observer, fake-quant, stub, float, container..."""
    from torch.ao import quantization as tq
    import torch.ao.nn.quantized as nnq

    if isinstance(module, tq.FakeQuantizeBase):
        return F.FAKE_QUANT
    if isinstance(module, tq.ObserverBase):
        return F.OBSERVER
    if isinstance(module, (tq.QuantStub, nnq.Quantize)):
        return F.QUANT_STUB
    if isinstance(module, (tq.DeQuantStub, nnq.DeQuantize)):
        return F.DEQUANT_STUB
    if isinstance(module, (nnq.FloatFunctional, nnq.QFunctional, nnq.FXFloatFunctional)):
        return F.FLOAT_FUNCTIONAL
    origin = type(module).__module__
    if origin.startswith(_DYNAMIC_PREFIXES):
        return F.DYNAMIC_QUANTIZED
    if origin.startswith(_REFERENCE_PREFIXES):
        return F.REFERENCE_QUANTIZED
    if origin.startswith(_QAT_PREFIXES):
        return F.QAT
    if origin.startswith(_QUANTIZED_PREFIXES) and not origin.startswith("torch.ao.nn.quantizable"):
        return F.QUANTIZED
    has_children = not is_effective_leaf(module)
    if has_children and type(module).__module__.startswith("torch.ao.nn.intrinsic.modules"):
        return F.FLOAT  # a fused float ConvReLU2d etc. before prepare: one op, not a container
    return F.CONTAINER if has_children else F.FLOAT


def is_effective_leaf(module: nn.Module) -> bool:
    """A module with no children but the observers/fake-quants that prepare() attaches to it, or the packed-weight
    holder of a quantized Linear/Embedding (``_packed_params``), which is storage, never called as a module."""
    from torch.ao import quantization as tq

    return all(
        isinstance(c, (tq.ObserverBase, tq.FakeQuantizeBase)) or type(c).__name__.endswith("PackedParams")
        for c in module.children()
    )


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
    except Exception:  # noqa: BLE001 - an exotic qconfig: record the names only
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


def _quantized_weight(module: nn.Module) -> torch.Tensor | None:
    weight = getattr(module, "weight", None)
    try:
        if callable(weight):
            weight = weight()
    except Exception:  # noqa: BLE001
        return None
    if isinstance(weight, tuple):
        weight = weight[0]
    return weight if isinstance(weight, torch.Tensor) else None


def describe(module: nn.Module, path: str, source: SourceLocation | None) -> ModuleInfo:
    kind = classify(module)
    info = ModuleInfo(
        path=path,
        type=type(module).__name__,
        type_module=type(module).__module__,
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
    if kind in (F.OBSERVER, F.FAKE_QUANT):
        observer = getattr(module, "activation_post_process", module)
        info.observed_min = _float_or_none(getattr(observer, "min_val", None))
        info.observed_max = _float_or_none(getattr(observer, "max_val", None))
        if kind == F.FAKE_QUANT:
            info.fake_quant_enabled = bool(_float_or_none(getattr(module, "fake_quant_enabled", 1)))
            info.observer_enabled = bool(_float_or_none(getattr(module, "observer_enabled", 1)))
    info.has_observer_attached = hasattr(module, "activation_post_process") and kind not in (F.FAKE_QUANT,)
    return info


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
