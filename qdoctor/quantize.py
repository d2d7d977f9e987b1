"""Builders that quantize a float model the right way, on a copy: used by verified fixes and by `qdoctor compare`.

Every builder works on a deep copy (the user's model is never touched) and returns the model together with the
quantized engine it was built for: packed int8 weights belong to the engine in force at convert time, so the
model must be run (and timed) under that engine — use ``quantized_engine(engine)``.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from qdoctor.fusion import executed_layers, fusion_groups

Batches = Sequence[tuple[Any, ...]]
CALIBRATION_BATCHES = 8


@dataclass
class Built:
    model: nn.Module
    engine: str
    steps: list[str] = field(default_factory=list)  # what was done, in words, for the report
    code: str = ""  # the code that does the same to the user's float model


@contextlib.contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    """Run with ``torch.backends.quantized.engine = engine``; the previous engine is restored afterwards."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def default_qconfig(engine: str) -> Any:
    from torch.ao import quantization as tq

    return tq.get_default_qconfig(engine)


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
    for _ in range(count - 1):
        batch = []
        for tensor in example_inputs:
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                std = float(tensor.std()) if tensor.numel() > 1 else 1.0
                mean = float(tensor.mean())
                batch.append(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * std + mean)
            else:
                batch.append(tensor)
        batches.append(tuple(batch))
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


def fusion_plan(float_model: nn.Module, inputs: tuple[Any, ...]) -> list[list[str]]:
    """fuse_modules groups for a float model, found from one traced forward pass (see qdoctor.fusion)."""
    from qdoctor.gather.trace import trace_model

    trace = trace_model(float_model, inputs, None)
    if trace.crash is not None:
        return []
    return fusion_groups(executed_layers(trace.events))


def fuse(float_model: nn.Module, inputs: tuple[Any, ...]) -> tuple[nn.Module, list[list[str]]]:
    """A fused copy (eval mode) and the groups that were fused."""
    from torch.ao import quantization as tq

    model = copy.deepcopy(float_model).eval()
    groups = fusion_plan(model, inputs)
    if groups:
        model = tq.fuse_modules(model, groups)
    return model, groups


def calibrate(prepared: nn.Module, batches: Iterable[tuple[Any, ...]]) -> None:
    with torch.no_grad():
        for batch in batches:
            prepared(*batch)


def static_eager(
    float_model: nn.Module,
    inputs: tuple[Any, ...],
    engine: str,
    batches: Batches,
    *,
    do_fuse: bool = True,
    wrap: bool = True,
) -> Built:
    """Eager-mode static int8: (wrap with stubs) -> fuse -> qconfig for ``engine`` -> prepare -> calibrate -> convert."""
    from torch.ao import quantization as tq

    steps = []
    with _quiet(), quantized_engine(engine):
        model = copy.deepcopy(float_model).eval()
        groups: list[list[str]] = []
        if do_fuse:
            model, groups = fuse(model, inputs)
            if groups:
                steps.append(f"fused {len(groups)} group(s)")
        if wrap and not has_quant_stub(model):
            model = wrap_with_stubs(model)
            steps.append("wrapped with QuantStub/DeQuantStub")
        model.qconfig = default_qconfig(engine)
        prepared = tq.prepare(model)
        calibrate(prepared, batches)
        quantized = tq.convert(prepared)
    steps += [f"qconfig and engine '{engine}'", f"calibrated on {len(batches)} batch(es)", "converted"]
    fuse_line = f"model = torch.ao.quantization.fuse_modules(model, {groups!r})\n" if groups else ""
    wrap_line = "model = torch.ao.quantization.QuantWrapper(model)\n" if "wrapped with QuantStub/DeQuantStub" in steps else ""
    code = (
        f'torch.backends.quantized.engine = "{engine}"\n'
        "model = float_model.eval()\n"
        f"{fuse_line}{wrap_line}"
        f'model.qconfig = torch.ao.quantization.get_default_qconfig("{engine}")\n'
        "prepared = torch.ao.quantization.prepare(model)\n"
        "with torch.no_grad():\n"
        "    for batch in calibration_batches:\n"
        "        prepared(*batch)\n"
        "quantized_model = torch.ao.quantization.convert(prepared)"
    )
    return Built(quantized, engine, steps, code)


def static_fx(float_model: nn.Module, inputs: tuple[Any, ...], engine: str, batches: Batches) -> Built:
    """FX graph mode static int8: prepare_fx places the stubs and fuses by itself."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with _quiet(), quantized_engine(engine):
        model = copy.deepcopy(float_model).eval()
        prepared = prepare_fx(model, get_default_qconfig_mapping(engine), example_inputs=tuple(inputs))
        calibrate(prepared, batches)
        quantized = convert_fx(prepared)
    code = (
        "from torch.ao.quantization import get_default_qconfig_mapping\n"
        "from torch.ao.quantization.quantize_fx import prepare_fx, convert_fx\n"
        f'torch.backends.quantized.engine = "{engine}"\n'
        f'prepared = prepare_fx(float_model.eval(), get_default_qconfig_mapping("{engine}"), example_inputs)\n'
        "with torch.no_grad():\n"
        "    for batch in calibration_batches:\n"
        "        prepared(*batch)\n"
        "quantized_model = convert_fx(prepared)"
    )
    return Built(quantized, engine, ["FX prepare_fx (fuses, places q/dq)", f"engine '{engine}'", f"calibrated on {len(batches)} batch(es)", "convert_fx"], code)


DYNAMIC_TYPES = (nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell)


def dynamic(float_model: nn.Module, engine: str, types: Sequence[type] | None = None) -> Built:
    """Dynamic int8 (weights int8, activations quantized on the fly) for the layer types present."""
    from torch.ao import quantization as tq

    present = {type(m) for m in float_model.modules()}
    chosen = set(types) if types is not None else {t for t in DYNAMIC_TYPES if t in present} or {nn.Linear}
    with _quiet(), quantized_engine(engine):
        quantized = tq.quantize_dynamic(copy.deepcopy(float_model).eval(), chosen, dtype=torch.qint8)
    names = ", ".join(sorted(f"nn.{t.__name__}" for t in chosen))
    code = (
        f'torch.backends.quantized.engine = "{engine}"\n'
        f"quantized_model = torch.ao.quantization.quantize_dynamic(float_model.eval(), {{{names}}}, dtype=torch.qint8)"
    )
    return Built(quantized, engine, [f"dynamic int8 for {names}", f"engine '{engine}'"], code)
