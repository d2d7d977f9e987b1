"""Where a quantized model's error comes from, read from the per-layer numerics (pure, no torch): the thresholds and
the judgements QD020 (error hotspot), QD021 (per-tensor weight outliers) and QD022 (calibration range outliers)
share, so that QD020 can say which of the other two explains a hotspot."""

from __future__ import annotations

from qdoctor import facts as F
from qdoctor.diagnose.rules.qd001_uncalibrated_observers import DEFAULT_SCALE, has_default_qparams, never_observed
from qdoctor.facts import SQNR_FLOOR_DB, Facts, LayerNumerics
from qdoctor.facts.weights import accuracy_judged

# A layer is a hotspot when its isolated SQNR is this far below the median of the other layers' (a healthy int8
# layer adds noise 35-50 dB below its signal; 10 dB below the rest is ten times the noise of a typical layer).
HOTSPOT_MARGIN_DB = 10.0
MAX_HOTSPOTS = 3
# Per-tensor weights: the channel with the largest range sets the one step for all. At this ratio the median channel
# spans 1/8 of the levels (32 of 256): its weight SQNR drops by ~18 dB against per-channel.
CHANNEL_RANGE_RATIO = 8.0
PER_CHANNEL_GAIN_DB = 6.0  # and per-channel weights must measure at least this much better (x4 less noise)
# A quantizer whose range is so wide that a typical row's values span fewer levels than this: 16 levels is a 4-bit
# signal (~25 dB at best, less once the next layers add theirs), when int8 should give 256.
LEVELS_FLOOR = 16.0
MAX_DROP_POINTS = 1.0  # evaluate(): an accuracy drop above this many points is a loss even above the SQNR floor

__all__ = [
    "CHANNEL_RANGE_RATIO",
    "HOTSPOT_MARGIN_DB",
    "LEVELS_FLOOR",
    "MAX_DROP_POINTS",
    "MAX_HOTSPOTS",
    "PER_CHANNEL_GAIN_DB",
    "SQNR_FLOOR_DB",
    "below_floor",
    "explained_elsewhere",
    "float_twin_in_train_mode",
    "harmful_range_outliers",
    "hotspots",
    "per_tensor_outliers",
    "range_outliers",
    "stood_in",
    "weights_untrained",
    "worst_first",
]


def below_floor(facts: Facts) -> bool:
    """The output SQNR is below the floor, or evaluate() dropped more than MAX_DROP_POINTS."""
    numerics = facts.numerics
    if numerics is None:
        return False
    drop = numerics.accuracy_drop_points
    if drop is not None and drop > MAX_DROP_POINTS:
        return True
    return numerics.sqnr_db is not None and numerics.sqnr_db < SQNR_FLOOR_DB


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def worst_first(layers: list[LayerNumerics]) -> list[LayerNumerics]:
    """Compute layers (not stubs) by isolated SQNR, worst first: the order to keep them in float."""
    measured = [layer for layer in layers if layer.kind != F.QUANT_STUB and layer.isolated_sqnr_db is not None]
    return sorted(measured, key=lambda layer: layer.isolated_sqnr_db or 0.0)


def hotspots(layers: list[LayerNumerics]) -> list[LayerNumerics]:
    """The few layers whose isolated SQNR is far below the others' (at most MAX_HOTSPOTS, worst first)."""
    measured = [layer for layer in layers if layer.isolated_sqnr_db is not None]
    found = []
    for layer in worst_first(layers):
        others = [o.isolated_sqnr_db for o in measured if o is not layer and o.isolated_sqnr_db is not None]
        if not others:
            break
        isolated = layer.isolated_sqnr_db or 0.0
        if isolated < _median(others) - HOTSPOT_MARGIN_DB:
            found.append(layer)
    if len(found) > MAX_HOTSPOTS or len(found) * 2 > len(measured):
        return []  # half the network is "far below the rest": nothing stands out
    return found


def per_tensor_outliers(layers: list[LayerNumerics]) -> list[LayerNumerics]:
    """Layers with per-tensor weights whose per-output-channel ranges differ by CHANNEL_RANGE_RATIO or more, and
    where per-channel weights measure PER_CHANNEL_GAIN_DB better."""
    found = []
    for layer in layers:
        if not layer.weight_qscheme or "per_tensor" not in layer.weight_qscheme:
            continue
        ratio = layer.weight_channel_range_ratio
        if ratio is None or ratio < CHANNEL_RANGE_RATIO:
            continue
        actual, per_channel = layer.weight_sqnr_db, layer.weight_sqnr_per_channel_db
        if actual is not None and per_channel is not None and per_channel - actual < PER_CHANNEL_GAIN_DB:
            continue
        found.append(layer)
    return found


# The smallest step torch's observers choose (their eps, torch.finfo(torch.float32).eps): a layer quantized at this step
# holds values too small for int8 to resolve at all (activations that vanish, as in random-init networks with
# untouched BatchNorm statistics), not a range that extreme calibration values widened.
MIN_OBSERVER_SCALE = 1.1920928955078125e-07


def range_outliers(layers: list[LayerNumerics]) -> list[LayerNumerics]:
    """Layers whose output quantizer spans so wide a range that a typical row uses fewer than LEVELS_FLOOR levels
    (not those left at the uncalibrated default step of 1.0: no range was recorded there at all, QD001's case; nor
    those at the observers' smallest step, whose data is too small for any range)."""
    return [
        layer
        for layer in layers
        if layer.levels_used is not None
        and layer.levels_used < LEVELS_FLOOR
        and not uncalibrated_scale(layer)
        and not (layer.output_scale is not None and layer.output_scale <= MIN_OBSERVER_SCALE * 1.001)
    ]


def _harmed(layer: LayerNumerics, layers: list[LayerNumerics]) -> bool:
    """The layer's own error shows: its isolated SQNR below the floor, or HOTSPOT_MARGIN_DB below the other layers'."""
    isolated = layer.isolated_sqnr_db
    if isolated is None:
        return False
    if isolated < SQNR_FLOOR_DB:
        return True
    others = [o.isolated_sqnr_db for o in layers if o is not layer and o.isolated_sqnr_db is not None]
    return bool(others) and isolated < _median(others) - HOTSPOT_MARGIN_DB


def harmful_range_outliers(layers: list[LayerNumerics]) -> list[LayerNumerics]:
    """range_outliers() whose harm shows in the layer's own error (a range that costs nothing is no finding)."""
    return [layer for layer in range_outliers(layers) if _harmed(layer, layers)]


_MODE_DEPENDENT = ("BatchNorm", "Dropout")  # layers whose output depends on module.training (QD009 reads the same)


# Offline stand-ins (qdoctor.load.standins) that make an accuracy judgement meaningless: random weights instead of the
# reporter's trained ones, fake data instead of their calibration set. Speed still holds; SQNR does not.
ACCURACY_STAND_INS = ("pretrained-weights", "hub-model", "checkpoint", "dataset")


def stood_in(facts: Facts) -> list[str]:
    """What the script asked for that ran as a stand-in and that the accuracy rules cannot judge through."""
    return sorted({s.kind for s in facts.target.substitutions if s.kind in ACCURACY_STAND_INS})


def weights_untrained(facts: Facts) -> bool:
    """The weights are untrained (qdoctor.facts.weights; --weights overrides): an SQNR or a per-layer error measures
    the random draw, not the user's model, so the verdicts that depend on the weights (QD020, QD021) are not given."""
    return not accuracy_judged(facts.weights)


def explained_elsewhere(facts: Facts) -> str | None:
    """What already explains a low SQNR (in words), read from the same facts that rule reads: QD001 (int8 modules
    with the uncalibrated observer defaults, observers that never saw data), QD006 (observers or fake-quant left in
    the model that runs) or QD009 (Dropout or BatchNorm left float and run in train mode). QD020 and QD022 leave those
    models to them, so below the floor there is still always a finding."""
    modules = facts.modules or []
    if any(has_default_qparams(m) or never_observed(m) for m in modules):
        return "converted without calibration"
    if any(m.kind in (F.OBSERVER, F.FAKE_QUANT, F.QAT) for m in modules):
        return "not converted"
    if any(m.training and m.kind == F.FLOAT and any(t in m.type for t in _MODE_DEPENDENT) for m in modules):
        # float Dropout / BatchNorm run in train mode: the numbers measure the mode, not quantization
        return "float layers in train mode"
    return None


def float_twin_in_train_mode(facts: Facts) -> bool:
    """The float baseline runs Dropout or BatchNorm in train mode: its outputs, the per-layer references, vary from
    call to call, so ranges measured on them say nothing about calibration."""
    return any(
        m.training and m.is_leaf and any(t in m.type for t in _MODE_DEPENDENT) for m in facts.float_modules or []
    )


def uncalibrated_scale(layer: LayerNumerics) -> bool:
    return layer.output_scale == DEFAULT_SCALE  # the observer default convert() keeps without calibration (QD001)
