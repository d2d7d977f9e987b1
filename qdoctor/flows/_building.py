"""Builder helpers the flows share: default qconfigs and their code, calibration batches, stubs, BatchNorm folds,
keeping layers in float. Every builder works on a deep copy: the user's model is never touched.

Packed int8 weights belong to the engine in force at convert time, so a built model must run (and be timed) under
that engine: ``quantized_engine(engine)``, which ``Flow.runtime`` puts in force.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

CALIBRATION_BATCHES = 8


@contextlib.contextmanager
def quiet_build() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def default_qconfig(engine: str, weight_per_channel: bool | None = None) -> Any:
    """The engine's default qconfig; ``weight_per_channel`` True/False swaps in the per-channel / per-tensor weight
    observer (QD021's fix and its defect)."""
    from torch.ao import quantization as tq

    qconfig = tq.get_default_qconfig(engine)
    if weight_per_channel is None:
        return qconfig
    weight = tq.default_per_channel_weight_observer if weight_per_channel else tq.default_weight_observer
    return tq.QConfig(activation=qconfig.activation, weight=weight)


def qconfig_code(engine: str, weight_per_channel: bool | None) -> str:
    default = f'torch.ao.quantization.get_default_qconfig("{engine}")'
    if weight_per_channel is None:
        return default
    weight = "default_per_channel_weight_observer" if weight_per_channel else "default_weight_observer"
    return (
        f"torch.ao.quantization.QConfig(\n    activation={default}.activation,\n"
        f"    weight=torch.ao.quantization.{weight},\n)"
    )


def keep_in_float(model: nn.Module, paths: Sequence[str]) -> None:
    """Eager: each module at ``paths`` gets qconfig None and runs between a DeQuantStub and a QuantStub, in float."""
    from torch.ao import quantization as tq

    for path in paths:
        parent_name, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = getattr(parent, child)
        layer.qconfig = None
        setattr(parent, child, nn.Sequential(tq.DeQuantStub(), layer, tq.QuantStub()))


KEEP_IN_FLOAT_CODE = """for name in {paths!r}:  # keep in float: qconfig None, between a DeQuantStub and a QuantStub
    parent_name, _, child = name.rpartition(".")
    parent = {model}.get_submodule(parent_name)
    layer = getattr(parent, child)
    layer.qconfig = None
    setattr(parent, child, torch.nn.Sequential(
        torch.ao.quantization.DeQuantStub(), layer, torch.ao.quantization.QuantStub()))"""


def calibration_batches(
    calibration_data: Callable[[], Any] | None,
    example_inputs: tuple[Any, ...],
    count: int = CALIBRATION_BATCHES,
    seed: int = 0,
) -> tuple[list[tuple[Any, ...]], str]:
    """Batches to calibrate with, and where they came from (said in the report).

    The script's ``calibration_data()`` when it has one; else the example inputs plus random tensors of the same
    shape and a similar scale (a stand-in: real data calibrates better). ``seed`` picks the random stand-ins
    (another seed gives held-out batches to measure on).
    """
    if calibration_data is not None:
        batches = []
        for item in calibration_data():
            batches.append(tuple(item) if isinstance(item, (tuple, list)) else (item,))
        if batches:
            return batches, f"calibration_data() from the script ({len(batches)} batches)"
    batches = [tuple(example_inputs)]
    generator = torch.Generator().manual_seed(seed)
    from torch.utils import _pytree

    def stand_in(value: Any) -> Any:
        """A random tensor like each floating tensor, however deep in the arguments (an LSTM's (x, (h, c)))."""
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            std = float(value.std()) if value.numel() > 1 else 1.0
            return torch.randn(value.shape, generator=generator, dtype=value.dtype) * std + float(value.mean())
        return value

    for _ in range(count - 1):
        batches.append(tuple(_pytree.tree_map(stand_in, list(example_inputs))))
    return batches, (
        f"the example inputs plus {count - 1} random batches of the same shape (no calibration_data() in the "
        "script: real data calibrates better)"
    )


def has_quant_stub(model: nn.Module) -> bool:
    from torch.ao import quantization as tq

    return any(isinstance(m, tq.QuantStub) for m in model.modules())


def wrap_with_stubs(model: nn.Module) -> nn.Module:
    """QuantStub -> model -> DeQuantStub, unless the model already has its own stubs."""
    from torch.ao import quantization as tq

    return model if has_quant_stub(model) else tq.QuantWrapper(model)


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def bn_folds(model: nn.Module, groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """Only the BatchNorm folds of a fusion plan: [conv, bn] out of [conv, bn, relu]; groups without BN dropped."""
    modules = dict(model.named_modules())
    folds = []
    for group in groups:
        for i, path in enumerate(group):
            if i > 0 and _is_batchnorm(modules[path]):
                folds.append(list(group[: i + 1]))
                break
    return folds


def calibrate(prepared: nn.Module, batches: Iterable[tuple[Any, ...]]) -> None:
    with torch.no_grad():
        for batch in batches:
            prepared(*batch)
