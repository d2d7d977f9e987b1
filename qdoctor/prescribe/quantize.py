"""Builders that quantize a float model the right way, on a copy: used by verified fixes and by `qdoctor compare`.

Every builder works on a deep copy (the user's model is never touched) and returns the model together with the
quantized engine it was built for: packed int8 weights belong to the engine in force at convert time, so the
model must be run (and timed) under that engine — use ``quantized_engine(engine)``.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from qdoctor.diagnose.fusion import executed_layers, fusion_groups
from qdoctor.introspect.state import quantized_engine

Batches = Sequence[tuple[Any, ...]]
CALIBRATION_BATCHES = 8


@dataclass
class Built:
    model: nn.Module
    engine: str
    steps: list[str] = field(default_factory=list)  # what was done, in words, for the report
    code: str = ""  # the code that does the same to the user's float model


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
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


def _qconfig_code(engine: str, weight_per_channel: bool | None) -> str:
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


def fusion_plan(float_model: nn.Module, inputs: tuple[Any, ...]) -> list[list[str]]:
    """fuse_modules groups for a float model, found from one traced forward pass (see qdoctor.diagnose.fusion)."""
    from qdoctor.gather.trace import trace_model

    trace = trace_model(float_model, inputs, None)
    if trace.crash is not None:
        return []
    return fusion_groups(executed_layers(trace.events))


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


def fuse(
    float_model: nn.Module, inputs: tuple[Any, ...], groups: Sequence[Sequence[str]] | None = None
) -> tuple[nn.Module, list[list[str]]]:
    """A fused copy (eval mode) and the groups that were fused (``groups``, or the plan found by tracing)."""
    from torch.ao import quantization as tq

    model = copy.deepcopy(float_model).eval()
    groups = [list(g) for g in groups] if groups is not None else fusion_plan(model, inputs)
    if groups:
        model = tq.fuse_modules(model, groups)
    return model, groups


def calibrate(prepared: nn.Module, batches: Iterable[tuple[Any, ...]]) -> None:
    with torch.no_grad():
        for batch in batches:
            prepared(*batch)


@dataclass
class CodeNames:
    """Names the generated code uses: the defaults are generic; a verified fix passes the user's own."""

    float_model: str = "float_model"
    quantized_model: str = "quantized_model"
    model: str = "model"  # the working copy
    prepared: str = "prepared"
    example_inputs: str = "example_inputs"
    calibration: str | None = None  # the calibration loop; None: iterate `calibration_batches`

    def calibration_loop(self) -> str:
        if self.calibration is not None:
            return self.calibration
        return f"with torch.no_grad():\n    for batch in calibration_batches:\n        {self.prepared}(*batch)"


def static_eager(
    float_model: nn.Module,
    inputs: tuple[Any, ...],
    engine: str,
    batches: Batches,
    *,
    do_fuse: bool = True,
    wrap: bool = True,
    groups: Sequence[Sequence[str]] | None = None,
    qconfig_engine: str | None = None,
    calibrate_model: bool = True,
    convert: bool = True,
    train: bool = False,
    names: CodeNames | None = None,
    float_layers: Sequence[str] = (),
    weight_per_channel: bool | None = None,
) -> Built:
    """Eager-mode static int8: (wrap with stubs) -> fuse -> qconfig for ``engine`` -> prepare -> calibrate -> convert.

    The keyword switches rebuild a model the way a script got it wrong, for verified fixes: ``groups`` fuses exactly
    those module groups (default: the traced plan), ``qconfig_engine`` takes another backend's default qconfig,
    ``calibrate_model=False`` converts observers that saw no data, ``convert=False`` returns the prepared model,
    ``train=True`` builds and returns it in training mode (BatchNorm cannot be folded then), ``float_layers`` keeps
    those modules in float (QD020's fix), ``weight_per_channel`` picks the weight observer (QD021).
    """
    from torch.ao import quantization as tq

    qconfig_engine = qconfig_engine or engine
    steps = []
    with _quiet(), quantized_engine(engine):
        model = copy.deepcopy(float_model)
        model.train(train)
        fused: list[list[str]] = []
        if do_fuse:
            plan = [list(g) for g in groups] if groups is not None else fusion_plan(model, inputs)
            if train:  # fuse_modules folds BatchNorm with eval statistics only
                plan = [g for g in plan if not bn_folds(model, [g])]
            if plan:
                model = tq.fuse_modules(model, plan)
                fused = plan
                steps.append(f"fused {len(plan)} group(s)")
        wrapped = wrap and not has_quant_stub(model)
        if float_layers:
            keep_in_float(model, float_layers)
            steps.append(f"kept in float: {', '.join(float_layers)}")
        if wrapped:
            model = wrap_with_stubs(model)
            steps.append("wrapped with QuantStub/DeQuantStub")
        model.qconfig = default_qconfig(qconfig_engine, weight_per_channel)
        prepared = tq.prepare(model)
        if calibrate_model:
            calibrate(prepared, batches)
        quantized = tq.convert(prepared) if convert else prepared
        quantized.train(train)
    steps.append(
        f"qconfig '{qconfig_engine}', engine '{engine}'"
        if qconfig_engine != engine
        else f"qconfig and engine '{engine}'"
    )
    steps.append(f"calibrated on {len(batches)} batch(es)" if calibrate_model else "not calibrated")
    steps.append("converted" if convert else "not converted")
    if train:
        steps.append("left in training mode")
    n = names or CodeNames()
    lines = [
        f'torch.backends.quantized.engine = "{engine}"',
        f"{n.model} = {n.float_model}.{'train' if train else 'eval'}()",
    ]
    if fused:
        lines.append(f"{n.model} = torch.ao.quantization.fuse_modules({n.model}, {fused!r})")
    if float_layers:
        lines.append(KEEP_IN_FLOAT_CODE.format(paths=list(float_layers), model=n.model))
    if wrapped:
        lines.append(f"{n.model} = torch.ao.quantization.QuantWrapper({n.model})")
    lines.append(f"{n.model}.qconfig = {_qconfig_code(qconfig_engine, weight_per_channel)}")
    lines.append(f"{n.prepared} = torch.ao.quantization.prepare({n.model})")
    if calibrate_model:
        lines.append(n.calibration_loop())
    if convert:
        lines.append(f"{n.quantized_model} = torch.ao.quantization.convert({n.prepared})")
    else:
        lines.append(f"{n.quantized_model} = {n.prepared}")
    return Built(quantized, engine, steps, "\n".join(lines))


def static_fx(
    float_model: nn.Module,
    inputs: tuple[Any, ...],
    engine: str,
    batches: Batches,
    *,
    qconfig_engine: str | None = None,
    calibrate_model: bool = True,
    convert: bool = True,
    names: CodeNames | None = None,
    float_layers: Sequence[str] = (),
    weight_per_channel: bool | None = None,
) -> Built:
    """FX graph mode static int8: prepare_fx places the stubs and fuses by itself.

    ``qconfig_engine``, ``calibrate_model``, ``convert``, ``float_layers`` and ``weight_per_channel`` as in
    static_eager (FX keeps a layer in float with ``qconfig_mapping.set_module_name(name, None)``).
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    qconfig_engine = qconfig_engine or engine
    with _quiet(), quantized_engine(engine):
        model = copy.deepcopy(float_model).eval()
        mapping = get_default_qconfig_mapping(qconfig_engine)
        if weight_per_channel is not None:
            mapping = mapping.set_global(default_qconfig(qconfig_engine, weight_per_channel))
        for name in float_layers:
            mapping = mapping.set_module_name(name, None)
        prepared = prepare_fx(model, mapping, example_inputs=tuple(inputs))
        if calibrate_model:
            calibrate(prepared, batches)
        quantized = convert_fx(prepared) if convert else prepared
    n = names or CodeNames()
    lines = [
        "from torch.ao.quantization import get_default_qconfig_mapping",
        "from torch.ao.quantization.quantize_fx import prepare_fx, convert_fx",
        f'torch.backends.quantized.engine = "{engine}"',
    ]
    mapping_code = f'get_default_qconfig_mapping("{qconfig_engine}")'
    if weight_per_channel is not None or float_layers:
        lines.append(f"qconfig_mapping = {mapping_code}")
        mapping_code = "qconfig_mapping"
    if weight_per_channel is not None:
        lines.append(f"qconfig_mapping.set_global({_qconfig_code(qconfig_engine, weight_per_channel)})")
    lines += [f'qconfig_mapping.set_module_name("{name}", None)  # keep it in float' for name in float_layers]
    lines.append(f"{n.prepared} = prepare_fx({n.float_model}.eval(), {mapping_code}, {n.example_inputs})")
    if calibrate_model:
        lines.append(n.calibration_loop())
    lines.append(
        f"{n.quantized_model} = convert_fx({n.prepared})" if convert else f"{n.quantized_model} = {n.prepared}"
    )
    steps = [
        "FX prepare_fx (fuses, places q/dq)",
        f"qconfig mapping '{qconfig_engine}', engine '{engine}'" if qconfig_engine != engine else f"engine '{engine}'",
        f"calibrated on {len(batches)} batch(es)" if calibrate_model else "not calibrated",
        "convert_fx" if convert else "not converted",
    ]
    if float_layers:
        steps.insert(1, f"kept in float: {', '.join(float_layers)}")
    return Built(quantized, engine, steps, "\n".join(lines))


DYNAMIC_TYPES = (nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell)


def dynamic(
    float_model: nn.Module,
    engine: str,
    types: Sequence[type] | None = None,
    *,
    names: CodeNames | None = None,
    float_layers: Sequence[str] = (),
) -> Built:
    """Dynamic int8 (weights int8, activations quantized on the fly) for the layer types present; the modules at
    ``float_layers`` stay float."""
    from torch.ao import quantization as tq

    present = {type(m) for m in float_model.modules()}
    chosen = set(types) if types is not None else {t for t in DYNAMIC_TYPES if t in present} or {nn.Linear}
    with _quiet(), quantized_engine(engine):
        spec: Any = chosen
        if float_layers:
            spec = dict[Any, Any]({t: tq.default_dynamic_qconfig for t in chosen})
            spec.update({path: None for path in float_layers})
        quantized = tq.quantize_dynamic(copy.deepcopy(float_model).eval(), spec, dtype=torch.qint8)
    names_text = ", ".join(sorted(f"nn.{t.__name__}" for t in chosen))
    n = names or CodeNames()
    if float_layers:
        entries = [f"{t}: torch.ao.quantization.default_dynamic_qconfig" for t in names_text.split(", ")]
        entries += [f'"{path}": None' for path in float_layers]
        spec_text = "{" + ", ".join(entries) + "}"
    else:
        spec_text = "{" + names_text + "}"
    code = (
        f'torch.backends.quantized.engine = "{engine}"\n'
        f"{n.quantized_model} = torch.ao.quantization.quantize_dynamic({n.float_model}.eval(), {spec_text}, "
        "dtype=torch.qint8)"
    )
    steps = [f"dynamic int8 for {names_text}", f"engine '{engine}'"]
    if float_layers:
        steps.insert(1, f"kept in float: {', '.join(float_layers)}")
    return Built(quantized, engine, steps, code)
