"""The vocabulary of graph facts: which op targets move data, carry a weight, or quantize, and node counts.

Shared by gathering (which labels each node) and the rules and reports (which read the labels); no torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from qdoctor.facts import kinds as F
from qdoctor.facts.data import GraphNode

# Ops that move or reinterpret data without computing: not worth counting as float compute.
LAYOUT_OPS = {
    "view",
    "reshape",
    "_reshape_alias",
    "_unsafe_view",
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
    "size",
    "getitem",
    "clone",
    "detach",
    "alias",
    "dropout",
    "feature_dropout",
    "alpha_dropout",
    "identity",
    "slice",
    "select",
    "split",
    "split_with_sizes",
    "chunk",
    "unbind",
    "narrow",
    "type_as",
    "numel",
    "dim",
    "lift_fresh_copy",
    "_assert_tensor_metadata",
    "sym_size",
    "sym_numel",
    "sym_stride",
    "_guards_fn",
    "float",
    "to",
    "_to_copy",
    "empty_like",
    "zeros_like",
    "ones_like",
    "__getitem__",
}
LAYOUT_MODULES = ("Identity", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "Flatten", "Unflatten", "GuardsFn")
# Ops with a weight operand: fed by a dequantized weight they are the quantized op of a reference (q/dq) pattern.
WEIGHTED_OPS = {
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "convolution",
    "linear",
    "addmm",
    "mm",
    "matmul",
    "bmm",
    "embedding",
    "embedding_bag",
}


_OP_NAMESPACES = ("aten.", "quantized_decomposed.", "quantized.", "torchao.", "onednn.", "prims.", "mkldnn.")


def short_op(target: str) -> str:
    """ "aten.conv2d.default" -> "conv2d", "torch._C._nn.gelu" -> "gelu", "quantized::linear" -> "linear",
    "aten::relu_" -> "relu"."""
    if "::" in target:
        name = target.split("::", 1)[1].split(".")[0]
    else:
        parts = [p for p in target.split(".") if p]
        if target.startswith(_OP_NAMESPACES) and len(parts) >= 2:
            name = parts[1]
        else:
            name = parts[-1] if parts else target
    if name.endswith("_") and not name.startswith("__") and len(name) > 1:
        name = name[:-1]  # in-place variant
    return name


def target_kind(target: str) -> str | None:
    """The kind a call's target alone decides: quantize, dequantize, int8 op, observer; None when its inputs decide."""
    lowered = target.lower()
    op = short_op(target)
    if "dequantize" in lowered:
        return F.NODE_DEQUANTIZE
    if "choose_qparams" in lowered:
        return F.NODE_OTHER
    if re.search(r"(^|[._:])quantize(_per_tensor|_per_channel|_per_token|_affine)?($|[._])", lowered) or op in (
        "quantize_per_tensor",
        "quantize_per_channel",
        "quantize_per_tensor_dynamic",
        "quantize_affine",
        "quantize_per_token",
    ):
        return F.NODE_QUANTIZE
    if lowered.startswith(("quantized.", "quantized::", "torch.ops.quantized.", "onednn.", "onednn::")):
        return F.NODE_QUANTIZED_OP
    if op in LAYOUT_OPS:
        return F.NODE_LAYOUT
    return None


def count_kinds(nodes: Iterable[GraphNode]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.kind] = counts.get(node.kind, 0) + 1
    return counts
