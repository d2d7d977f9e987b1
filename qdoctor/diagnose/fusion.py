"""Which modules eager-mode ``fuse_modules`` can fuse, found from module types and the order they ran in.

Pure data in, pure data out: QD004 calls it on Facts, the quantization builders call it on a float model's trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from qdoctor.facts import TraceEvent

CONV = ("Conv1d", "Conv2d", "Conv3d")
BN = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
RELU = ("ReLU",)
LINEAR = ("Linear",)

# The patterns torch.ao.quantization.fuse_modules accepts (fuser_method_mappings), longest first.
PATTERNS: tuple[tuple[tuple[str, ...], ...], ...] = (
    (CONV, BN, RELU),
    (CONV, BN),
    (CONV, RELU),
    (LINEAR, BN),
    (LINEAR, RELU),
    (BN, RELU),
)

# Quantized and fused module types: seeing these means the layer was already fused or converted after fusion.
FUSED_TYPES = (
    "ConvReLU1d",
    "ConvReLU2d",
    "ConvReLU3d",
    "ConvBn1d",
    "ConvBn2d",
    "ConvBn3d",
    "ConvBnReLU1d",
    "ConvBnReLU2d",
    "ConvBnReLU3d",
    "LinearReLU",
    "BNReLU2d",
    "BNReLU3d",
    "LinearBn1d",
)


# Functions that only change a tensor's memory layout or autograd state: a module after them still takes the previous
# module's output as it is.
_LAYOUT_ONLY = ("contiguous", "detach", "clone")


@dataclass(frozen=True)
class Layer:
    path: str
    type: str  # class name; quantized classes are mapped to their float names by base_type()
    calls: int = 1  # times the module ran in the traced forward (a shared ReLU runs more than once)
    # a torch function ran between the previous layer and this one (the add of a residual block, a cat, a flatten):
    # the previous layer's output went somewhere else first, so the two are not a fusable pair
    after_function: bool = False


def base_type(type_name: str) -> str:
    """QuantizedConv2d -> Conv2d, QuantizedLinear -> Linear; float names unchanged."""
    for prefix in ("Quantized", "QAT"):
        if type_name.startswith(prefix):
            return type_name[len(prefix) :]
    return type_name


def _matches(kinds: tuple[str, ...], layer: Layer) -> bool:
    return base_type(layer.type) in kinds


def fusion_groups(executed: Sequence[Layer]) -> list[list[str]]:
    """Groups of module paths to pass to fuse_modules, from leaf modules in execution order.

    A group needs its members to run back to back, each exactly once (fusing a shared ReLU would change every other
    place it is used), with no torch function between them (a ReLU after a residual add is not the conv's ReLU:
    fusing it would move the ReLU before the add), and to sit in the same parent module (fuse_modules replaces followers with Identity there).
    """
    groups: list[list[str]] = []
    i = 0
    while i < len(executed):
        matched = None
        for pattern in PATTERNS:
            window = executed[i : i + len(pattern)]
            if len(window) != len(pattern):
                continue
            if not all(_matches(kinds, layer) for kinds, layer in zip(pattern, window, strict=False)):
                continue
            if any(layer.calls != 1 for layer in window) or any(layer.after_function for layer in window[1:]):
                continue
            # Same parent only: those groups keep forward() unchanged after fuse_modules swaps in Identity.
            if len({layer.path.rpartition(".")[0] for layer in window}) != 1:
                continue
            matched = [layer.path for layer in window]
            break
        if matched:
            groups.append(matched)
            i += len(matched)
        else:
            i += 1
    return groups


def executed_layers(events: Iterable[TraceEvent]) -> list[Layer]:
    """Leaf-module calls from a qdoctor trace (TraceEvent objects), collapsed to one Layer per module, in first-call
    order, with call counts. Observers, stubs and non-compute modules are left out, so they do not break a sequence.
    """
    order: list[str] = []
    types: dict[str, str] = {}
    calls: dict[str, int] = {}
    after_function: set[str] = set()
    function_since_last = False
    skip = ("Observer", "FakeQuantize", "QuantStub", "DeQuantStub", "Quantize", "DeQuantize", "Identity", "Dropout")
    for event in events:
        if event.kind != "module":
            if event.name.rsplit(".", 1)[-1] not in _LAYOUT_ONLY:
                function_since_last = True
            continue
        path, type_name = event.name, event.type
        if any(s in type_name for s in skip) or path.endswith("activation_post_process"):
            continue
        if path not in calls:
            order.append(path)
            types[path] = type_name
            calls[path] = 0
            if function_since_last:
                after_function.add(path)
        function_since_last = False
        calls[path] += 1
    return [Layer(p, types[p], calls[p], p in after_function) for p in order]
