"""The faults of the matrix: each is one mistake injected into a model's recipe, the models it applies to, and the
findings it implies. A fault writes the quantization flow as lines over the style's names (``Names``); the style
decides the names, where the lines live (top level, a function, ``if __name__ == "__main__":``) and how the models
are run afterwards. The style must never change the findings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .models import HEALTHY, Model, Variant

# A finding no healthy cell may show: a crash nobody explains (QD014), a dtype mismatch crash (QD016), a failed flow
# step (QD017). A fault that implies one of them lists it in `expect`, which lifts it from `absent`.
NEVER_INVENTED = ("QD014", "QD016", "QD017")


@dataclass(frozen=True)
class Names:
    """The script's names for the float model, the prepared model, the quantized model, one batch of inputs and
    the calibration batches; ``calibrate`` writes the calibration of a prepared model the style's way."""

    float: str
    prepared: str
    quantized: str
    inputs: str
    batches: str
    calibrate: Callable[[Model, str, str], str]
    # the inputs are a tuple even for a model that takes keyword arguments (the contract's example_inputs)
    inputs_as_tuple: bool = False


@dataclass(frozen=True)
class Flow:
    lines: list[str]
    subject: str  # the name of the model the script ships and runs
    imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str
    applies: Callable[[Model], bool]
    flow: Callable[[Model, Names], Flow]
    expect: tuple[str, ...] = ()
    variant: Variant = HEALTHY
    # rules the expected finding needs beyond modules and the trace (QD007 reads the profile)
    needs_profile: bool = False
    allowed_errors: bool = True  # the 'none' fault: no error-level finding at all
    extra_absent: tuple[str, ...] = field(default=())

    @property
    def absent(self) -> tuple[str, ...]:
        return tuple(c for c in (*NEVER_INVENTED, *self.extra_absent) if c not in self.expect)


def _static(
    model: Model,
    n: Names,
    *,
    eval_mode: bool = True,
    fuse: bool = True,
    engine: str = "x86",
    qconfig: str = 'tq.get_default_qconfig("x86")',
    override: bool = True,
    calibrate: bool = True,
    convert: bool = True,
) -> Flow:
    f = n.float
    lines = [f"{f} = make_model()" + (".eval()" if eval_mode else "  # never switched to eval()")]
    lines.append(f'torch.backends.quantized.engine = "{engine}"')
    if fuse and model.fuse:
        lines.append(model.fuse.format(m=f))
    lines.append(f"{f}.qconfig = {qconfig}")
    if override and model.qconfig_override:
        lines.append(model.qconfig_override.format(m=f))
    lines.append(f"{n.prepared} = tq.prepare({f})")
    if calibrate:
        lines.append(n.calibrate(model, n.prepared, n.batches))
    if not convert:
        return Flow(lines, n.prepared)
    lines.append(f"{n.quantized} = tq.convert({n.prepared})")
    return Flow(lines, n.quantized)


def _dynamic(model: Model, n: Names, *, engine: str = "x86", modules: str = "") -> Flow:
    f = n.float
    return Flow(
        [
            f"{f} = make_model().eval()",
            f'torch.backends.quantized.engine = "{engine}"',
            f"{n.quantized} = tq.quantize_dynamic({f}, {modules or model.dynamic_modules}, dtype=torch.qint8)",
        ],
        n.quantized,
    )


def _none(model: Model, n: Names) -> Flow:
    return _static(model, n) if model.static else _dynamic(model, n)


def _qnnpack(model: Model, n: Names) -> Flow:
    if model.static:
        return _static(model, n, engine="qnnpack", qconfig='tq.get_default_qconfig("qnnpack")')
    return _dynamic(model, n, engine="qnnpack")


def _train_mode(model: Model, n: Names) -> Flow:
    # fuse_modules refuses BatchNorm in train mode ("Fusion only for eval!"), so such scripts skip fusion
    return _static(model, n, eval_mode=False, fuse=False)


def _qat_not_converted(model: Model, n: Names) -> Flow:
    f, p = n.float, n.prepared
    lines = [f"{f} = make_model().train()", 'torch.backends.quantized.engine = "x86"']
    if model.fuse_qat:
        lines.append(model.fuse_qat.format(m=f))
    lines += [
        f'{f}.qconfig = tq.get_default_qat_qconfig("x86")',
        f"{p} = tq.prepare_qat({f})",
        f"optimizer = torch.optim.SGD({p}.parameters(), lr=0.01)",
        f"for batch in {n.batches}:  # stands in for the training loop\n"
        f"    loss = {model.call(p, 'batch')}.pow(2).mean()\n"
        "    optimizer.zero_grad()\n"
        "    loss.backward()\n"
        "    optimizer.step()",
        f"{p}.eval()  # convert() never called",
    ]
    return Flow(lines, p)


def _pt2e(model: Model, n: Names) -> Flow:
    f, p = n.float, n.prepared
    lines = [
        f"{f} = make_model().eval()",
        "quantizer = xiq.X86InductorQuantizer()",
        "quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())",
        f"exported = torch.export.export({f}, tuple({n.inputs})).module()",
        f"{p} = prepare_pt2e(exported, quantizer)",
        n.calibrate(model, p, n.batches),
        f"{n.quantized} = convert_pt2e({p})  # run as is: never lowered",
    ]
    return Flow(
        lines,
        n.quantized,
        imports=(
            "import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq",
            "from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e",
        ),
    )


_QINT8 = "tq.QConfig(activation=tq.MinMaxObserver.with_args(dtype=torch.qint8), weight=tq.default_per_channel_weight_observer)"


def _static_only(extra: Callable[[Model], bool] = lambda m: True) -> Callable[[Model], bool]:
    return lambda m: m.static and extra(m)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("none", "the model's reference recipe", lambda m: True, _none, allowed_errors=False),
        Fault(
            "no_calibration",
            "converted straight after prepare",
            _static_only(),
            lambda m, n: _static(m, n, calibrate=False),
            expect=("QD001",),
        ),
        Fault(
            "no_quantstub",
            "no QuantStub before the first int8 layer",
            _static_only(lambda m: m.stubs_in_source),
            _none,
            expect=("QD002",),
            variant=Variant(quant_stub=False),
        ),
        Fault(
            "no_dequantstub",
            "no DeQuantStub after the last int8 layer",
            _static_only(lambda m: m.stubs_in_source),
            _none,
            expect=("QD002",),
            variant=Variant(dequant_stub=False),
        ),
        Fault("qnnpack_on_x86", "the qnnpack engine and qconfig on an x86 CPU", lambda m: True, _qnnpack, ("QD003",)),
        Fault(
            "not_fused",
            "Conv/Linear-BN-ReLU quantized unfused",
            _static_only(lambda m: m.fuse is not None),
            lambda m, n: _static(m, n, fuse=False),
            expect=("QD004",),
        ),
        Fault(
            "prepared_not_converted",
            "prepared and calibrated, never converted",
            _static_only(),
            lambda m, n: _static(m, n, convert=False),
            expect=("QD006",),
        ),
        Fault(
            "qat_not_converted",
            "QAT-trained, never converted",
            _static_only(lambda m: not m.conv_transpose),
            _qat_not_converted,
            expect=("QD006",),
        ),
        # quantize_dynamic calls .eval() on its copy itself: train mode is a fault of the static flows only, on
        # models whose BatchNorm or Dropout it changes
        Fault(
            "train_mode",
            "prepared, calibrated and converted in train mode",
            _static_only(lambda m: m.mode_dependent),
            _train_mode,
            expect=("QD009",),
        ),
        Fault(
            "dynamic_convs",
            "quantize_dynamic asked for Conv2d (it converts only the Linear layers)",
            lambda m: m.convs,
            lambda m, n: _dynamic(m, n, modules="{nn.Conv2d, nn.Linear}"),
            expect=("QD007",),
            needs_profile=True,
        ),
        Fault(
            "no_float_functional",
            "`+` / torch.cat on int8 tensors instead of FloatFunctional",
            _static_only(lambda m: m.adds),
            lambda m, n: _static(m, n, fuse=m.fuse_plain),
            expect=("QD011",),
            variant=Variant(float_functional=False),
        ),
        Fault(
            "qint8_activations",
            "a qconfig with signed int8 activations",
            _static_only(),
            lambda m, n: _static(m, n, qconfig=_QINT8),
            expect=("QD016",),
        ),
        Fault(
            "conv_transpose_per_channel",
            "the default per-channel qconfig on ConvTranspose2d",
            _static_only(lambda m: m.conv_transpose),
            lambda m, n: _static(m, n, override=False),
            expect=("QD016",),
        ),
        Fault(
            "pt2e_not_lowered",
            "PT2E converted and run without lowering",
            _static_only(),
            _pt2e,
            expect=("QD012",),
        ),
    )
}
