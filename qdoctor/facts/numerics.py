"""Numerics facts: the output SQNR against the float baseline, its floor, and the per-layer numbers
(qdoctor.gather.numerics and layer_numerics fill them; QD020-QD022 read them)."""

from __future__ import annotations

from dataclasses import dataclass, field

# The output SQNR below which a quantized model is judged to have lost accuracy. int8 normally gives 25-35 dB on
# CNNs and MLPs (healthy eager/FX fixtures here: 28-33 dB; torchvision resnet18 with per-channel weights ~30 dB);
# 20 dB is noise at a tenth of the signal's amplitude, 5 dB below the worst healthy case and the default of
# `qdoctor compare --min-sqnr`. QD020 fires on every model below it: an output SQNR below the floor always has a
# finding.
SQNR_FLOOR_DB = 20.0


@dataclass
class OutlierRow:
    """A calibration row whose values reach far beyond what the other rows produce at one layer."""

    batch: int  # index of the batch in calibration_data()'s order
    row: int  # index along the batch's first dimension
    max_abs: float  # largest |value| this row produces at the layer
    typical_max_abs: float  # the median of that over all rows seen


@dataclass
class LayerNumerics:
    """The quantization error of one quantized layer (or quantize stub) against its float twin."""

    path: str  # module path in the subject
    type: str  # class name, e.g. QuantizedConvReLU2d
    kind: str  # ModuleKind
    float_path: str | None = None  # the float twin's last module (a fused ReLU/BatchNorm after the conv), if any
    # SQNR (dB) of its output vs the float twin's, over every input seen: the int8 model up to here (accumulated),
    # and the float twin's input fed to this layer alone (isolated: its own error).
    accumulated_sqnr_db: float | None = None
    isolated_sqnr_db: float | None = None
    weight_sqnr_db: float | None = None  # int8 weight vs the float twin's (BatchNorm folded in)
    weight_qscheme: str | None = None
    weight_channel_range_ratio: float | None = None  # largest / median per-output-channel max |w|
    weight_sqnr_per_channel_db: float | None = None  # what per-channel int8 weights would give (computed)
    output_scale: float | None = None  # the quantizer's step at this layer's output
    levels_used: float | None = None  # of the 256 int8 levels, how many a typical row's output spans
    outlier_rows: list[OutlierRow] = field(default_factory=list)  # calibration rows that set the range


@dataclass
class Numerics:
    sqnr_db: float | None  # subject output vs float baseline output on the same input
    note: str = ""
    layers: list[LayerNumerics] = field(default_factory=list)  # in execution order
    layers_note: str = ""  # why there are none, or what they were measured on
    inputs_seen: int = 0  # batches behind the per-layer numbers (example inputs + calibration batches)
    calibration_batches_seen: int = 0  # of those, calibration_data() batches
    metric_subject: float | None = None  # evaluate(subject), when the script defines evaluate()
    metric_float: float | None = None  # evaluate(float baseline)

    @property
    def accuracy_drop_points(self) -> float | None:
        """evaluate(float) - evaluate(subject), in points (a 0-1 accuracy counts as percent)."""
        if self.metric_subject is None or self.metric_float is None:
            return None
        scale = 100.0 if abs(self.metric_float) <= 1.0 and abs(self.metric_subject) <= 1.0 else 1.0
        return (self.metric_float - self.metric_subject) * scale
