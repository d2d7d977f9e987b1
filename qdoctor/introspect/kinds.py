"""What a torch module is: its kind (quantized, dynamic, reference, QAT, observer, stub, float...) and the module
behind a torch.compile wrapper (how far along a flow a whole model is: introspect.flow). Read-only: nothing here
changes a model.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import torch
from torch import nn

from qdoctor import facts as F

_QUANTIZED_PREFIXES = (
    "torch.ao.nn.quantized.modules",
    "torch.ao.nn.intrinsic.quantized.modules",
    "torch.ao.nn.quantizable",  # quantizable LSTM/MHA after convert hold quantized children
    "torch.nn.quantized",
    "torch.nn.intrinsic.quantized",
)
_DYNAMIC_PREFIXES = (
    "torch.ao.nn.quantized.dynamic",
    "torch.ao.nn.intrinsic.quantized.dynamic",
    "torch.nn.quantized.dynamic",
)
_REFERENCE_PREFIXES = ("torch.ao.nn.quantized.reference",)
_QAT_PREFIXES = ("torch.ao.nn.qat", "torch.ao.nn.intrinsic.qat", "torch.nn.qat", "torch.nn.intrinsic.qat")


def _torchao_bases() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """torchao's PT2E observer and fake-quant base classes, when the user's code imported them (never imported here:
    torchao is optional and importing it is slow)."""
    observers: tuple[type, ...] = ()
    fake_quants: tuple[type, ...] = ()
    observer_module = sys.modules.get("torchao.quantization.pt2e.observer")
    if observer_module is not None:
        bases = (
            getattr(observer_module, "ObserverBase", None),
            getattr(observer_module, "AffineQuantizedObserverBase", None),
        )
        observers = tuple(c for c in bases if isinstance(c, type))
    fake_quant_module = sys.modules.get("torchao.quantization.pt2e.fake_quantize")
    base = getattr(fake_quant_module, "FakeQuantizeBase", None) if fake_quant_module is not None else None
    if isinstance(base, type):
        fake_quants = (base,)
    return observers, fake_quants


def script_origin(module: nn.Module) -> tuple[str, str] | None:
    """(module of the class, class name) that a TorchScript module was scripted or traced from."""
    if not isinstance(module, torch.jit.ScriptModule):
        return None
    try:
        qualified = module._c._type().qualified_name()
    except Exception:
        return None
    qualified = re.sub(r"\.___torch_mangle_\d+", "", qualified.removeprefix("__torch__."))
    origin, _, name = qualified.rpartition(".")
    return origin, name


def tensor_subclass(weight: Any) -> str | None:
    """Qualified class name of a torchao tensor-subclass weight (quantize_), else None."""
    if not isinstance(weight, torch.Tensor):
        return None
    cls = type(weight)
    if cls in (torch.Tensor, nn.Parameter) or not cls.__module__.startswith("torchao"):
        return None
    return f"{cls.__module__}.{cls.__qualname__}"


def classify(module: nn.Module) -> str:
    """The kind of a module (see qdoctor.facts): quantized, observer, fake-quant, stub, float, container..."""
    import torch.ao.nn.quantized as nnq
    from torch.ao import quantization as tq

    ao_observers, ao_fake_quants = _torchao_bases()
    if isinstance(module, tq.FakeQuantizeBase) or (ao_fake_quants and isinstance(module, ao_fake_quants)):
        return F.FAKE_QUANT
    if isinstance(module, tq.ObserverBase) or (ao_observers and isinstance(module, ao_observers)):
        return F.OBSERVER
    if isinstance(module, (tq.QuantStub, nnq.Quantize)):
        return F.QUANT_STUB
    if isinstance(module, (tq.DeQuantStub, nnq.DeQuantize)):
        return F.DEQUANT_STUB
    if isinstance(module, (nnq.FloatFunctional, nnq.QFunctional, nnq.FXFloatFunctional)):
        return F.FLOAT_FUNCTIONAL
    scripted = script_origin(module)
    if scripted is not None:
        return _classify_script(module, *scripted)
    if tensor_subclass(getattr(module, "weight", None)) is not None:
        return F.TORCHAO_QUANTIZED
    kind = _kind_by_origin(type(module).__module__)
    if kind is not None:
        return kind
    has_children = not is_effective_leaf(module)
    if has_children and type(module).__module__.startswith("torch.ao.nn.intrinsic.modules"):
        return F.FLOAT  # a fused float ConvReLU2d etc. before prepare: one op, not a container
    return F.CONTAINER if has_children else F.FLOAT


def _kind_by_origin(origin: str) -> str | None:
    """The kind the defining module of a class decides (dynamic, reference, QAT, quantized), else None."""
    if origin.startswith(_DYNAMIC_PREFIXES):
        return F.DYNAMIC_QUANTIZED
    if origin.startswith(_REFERENCE_PREFIXES):
        return F.REFERENCE_QUANTIZED
    if origin.startswith(_QAT_PREFIXES):
        return F.QAT
    if origin.startswith(_QUANTIZED_PREFIXES) and not origin.startswith("torch.ao.nn.quantizable"):
        return F.QUANTIZED
    return None


def _classify_script(module: nn.Module, origin: str, name: str) -> str:
    """A TorchScript module, by the class it was scripted from (its own type is RecursiveScriptModule)."""
    if name in ("Quantize", "QuantStub") and ("quantized" in origin or "stubs" in origin):
        return F.QUANT_STUB
    if name in ("DeQuantize", "DeQuantStub") and ("quantized" in origin or "stubs" in origin):
        return F.DEQUANT_STUB
    if name in ("FloatFunctional", "QFunctional", "FXFloatFunctional"):
        return F.FLOAT_FUNCTIONAL
    if "Observer" in name and "quantization" in origin:
        return F.OBSERVER
    if "FakeQuant" in name and "quantization" in origin:
        return F.FAKE_QUANT
    kind = _kind_by_origin(origin)
    if kind == F.QUANTIZED and name == "LinearPackedParams":
        return F.CONTAINER  # the holder of a quantized Linear's packed weight: bookkeeping, not a layer
    if kind is not None:
        return kind
    return F.CONTAINER if not is_effective_leaf(module) else F.FLOAT


def is_effective_leaf(module: nn.Module) -> bool:
    """A module with no children but the observers/fake-quants that prepare() attaches to it, or the packed-weight
    holder of a quantized Linear/Embedding (``_packed_params``), which is storage, never called as a module."""
    from torch.ao import quantization as tq

    return all(
        isinstance(c, (tq.ObserverBase, tq.FakeQuantizeBase)) or type(c).__name__.endswith("PackedParams")
        for c in module.children()
    )


def eager_module(subject: nn.Module) -> nn.Module:
    """The module behind a torch.compile wrapper (OptimizedModule._orig_mod); the subject itself otherwise."""
    inner = getattr(subject, "_orig_mod", None)
    return inner if isinstance(inner, nn.Module) and type(subject).__name__ == "OptimizedModule" else subject
