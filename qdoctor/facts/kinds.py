"""The kinds the facts use, as string enums (no torch): what a module is (``ModuleKind``), the profile's time
categories (``Category``) and the graph's node kinds (``NodeKind``), with the short names the rules use
(``from qdoctor import facts as F; F.QUANTIZED``). Which module *is* of which kind is decided by qdoctor.introspect.kinds.
"""

from __future__ import annotations

from enum import Enum


class _StrKind(str, Enum):
    """A kind that is its string: equal to it, formatted as it, written to JSON as it (enum.StrEnum from 3.11)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ModuleKind(_StrKind):
    """What a module is, as recorded in ModuleInfo.kind."""

    QUANTIZED = "quantized"  # static int8 modules (torch.ao.nn.quantized, intrinsic.quantized)
    DYNAMIC_QUANTIZED = "dynamic_quantized"  # torch.ao.nn.quantized.dynamic
    REFERENCE_QUANTIZED = "reference_quantized"  # torch.ao.nn.quantized.reference (float compute around q/dq)
    QAT = "qat"  # torch.ao.nn.qat / intrinsic.qat: float compute with fake-quant weights
    FLOAT = "float"
    OBSERVER = "observer"
    FAKE_QUANT = "fake_quant"
    QUANT_STUB = "quant_stub"  # QuantStub before convert, nnq.Quantize after
    DEQUANT_STUB = "dequant_stub"  # DeQuantStub before convert, nnq.DeQuantize after
    FLOAT_FUNCTIONAL = "float_functional"  # FloatFunctional before convert, QFunctional after
    CONTAINER = "container"
    TORCHAO_QUANTIZED = "torchao_quantized"  # a float module whose weight is a torchao tensor subclass (quantize_)


class Category(_StrKind):
    """Time-breakdown categories of the profile."""

    INT8 = "int8_kernels"
    QDQ = "quantize_dequantize"
    FLOAT = "float_compute"
    OBSERVER = "observers_fake_quant"
    OTHER = "other"


class NodeKind(_StrKind):
    """Graph node kinds, as recorded in GraphNode.kind (FX GraphModules, PT2E/exported programs, TorchScript)."""

    INPUT = "input"  # placeholder / graph input
    OUTPUT = "output"
    ATTR = "attr"  # get_attr, constants, packed params
    QUANTIZE = "quantize"  # float -> int8 (quantize_per_tensor, quantized_decomposed.quantize_*, ...)
    DEQUANTIZE = "dequantize"  # int8 -> float
    QUANTIZED_OP = "quantized_op"  # runs an int8 kernel now (quantized::*, a quantized module, an op on int8 tensors)
    REFERENCE_OP = "reference_op"  # float op fed by dequantize: fp32 now, int8 once lowered (PT2E, reference FX)
    FLOAT_OP = "float_op"  # float compute
    LAYOUT = "layout"  # shape/view/bookkeeping ops: no compute worth counting
    OBSERVER = "observer"
    FAKE_QUANT = "fake_quant"
    OTHER = "other"


# The short names the rules and gatherers use (``from qdoctor import facts as F; F.QUANTIZED``).
QUANTIZED = ModuleKind.QUANTIZED
DYNAMIC_QUANTIZED = ModuleKind.DYNAMIC_QUANTIZED
REFERENCE_QUANTIZED = ModuleKind.REFERENCE_QUANTIZED
QAT = ModuleKind.QAT
FLOAT = ModuleKind.FLOAT
OBSERVER = ModuleKind.OBSERVER
FAKE_QUANT = ModuleKind.FAKE_QUANT
QUANT_STUB = ModuleKind.QUANT_STUB
DEQUANT_STUB = ModuleKind.DEQUANT_STUB
FLOAT_FUNCTIONAL = ModuleKind.FLOAT_FUNCTIONAL
CONTAINER = ModuleKind.CONTAINER
TORCHAO_QUANTIZED = ModuleKind.TORCHAO_QUANTIZED

CAT_INT8 = Category.INT8
CAT_QDQ = Category.QDQ
CAT_FLOAT = Category.FLOAT
CAT_OBSERVER = Category.OBSERVER
CAT_OTHER = Category.OTHER
CATEGORIES = tuple(Category)

NODE_INPUT = NodeKind.INPUT
NODE_OUTPUT = NodeKind.OUTPUT
NODE_ATTR = NodeKind.ATTR
NODE_QUANTIZE = NodeKind.QUANTIZE
NODE_DEQUANTIZE = NodeKind.DEQUANTIZE
NODE_QUANTIZED_OP = NodeKind.QUANTIZED_OP
NODE_REFERENCE_OP = NodeKind.REFERENCE_OP
NODE_FLOAT_OP = NodeKind.FLOAT_OP
NODE_LAYOUT = NodeKind.LAYOUT
NODE_OBSERVER = NodeKind.OBSERVER
NODE_FAKE_QUANT = NodeKind.FAKE_QUANT
NODE_OTHER = NodeKind.OTHER
