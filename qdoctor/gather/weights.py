"""Are the model's weights trained? Read once from the model, the script's text and the offline stand-ins.

The evidence, strongest first:

- every weight tensor looks like a fresh draw of an initialisation: torch's own (``reset_parameters`` of nn.Linear and
  nn.ConvNd: kaiming-uniform with a=sqrt(5), bound 1/sqrt(fan_in), biases alike), torchvision's (kaiming-normal
  fan_out, normal 0.01), the usual others (xavier, normal 0.02, LSTM's uniform 1/sqrt(hidden), Embedding's N(0, 1)).
  A Kolmogorov-Smirnov test of each tensor against each of them: trained weights rarely fill a uniform box or keep
  the exact spread they started with, while a few hand-edited values (a dead unit) do not move the statistic;
- BatchNorm running statistics still at their initial values (mean 0, var 1, num_batches_tracked 0): the model
  never ran in train mode, so it was never trained. Calibration runs in eval mode and observers change no weight;
  a model whose BatchNorm statistics moved while every weight stayed at its draw ran in train mode but was not
  trained either;
- a torchvision builder called with ``weights=None`` / ``pretrained=False`` (or none) in the script's text, and the
  offline stand-ins that replaced pretrained weights or a checkpoint by random ones (qdoctor.load.standins).

Nothing here runs the model or changes it: parameters and buffers are only read.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from qdoctor.facts import Substitution
from qdoctor.facts.weights import TRAINED, UNKNOWN, UNTRAINED, Weights

MIN_TENSOR_ELEMENTS = 32  # smaller tensors say too little to a statistical test
MIN_ELEMENTS = 1000  # weight values tested in all before the weights can tell
SAMPLE = 20_000  # values of one tensor tested at most (an even stride through it): KS resolves ~1.4%
KS_COEFFICIENT = 1.95  # Kolmogorov-Smirnov critical value at alpha = 0.001 is 1.95 / sqrt(n)
AT_INIT_SHARE = 0.9  # of the tested values, the share in fresh-draw tensors for the weights to be "at init"
WEIGHT_STAND_INS = ("pretrained-weights", "hub-model", "checkpoint")

_Cdf = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _Init:
    name: str
    cdf: _Cdf
    density: float  # the largest value of its density (for the allowance of rounded values)


def _uniform(name: str, bound: float) -> _Init:
    return _Init(name, lambda x: ((x + bound) / (2 * bound)).clamp(0.0, 1.0), 1.0 / (2 * bound))


def _normal(name: str, std: float) -> _Init:
    return _Init(
        name, lambda x: 0.5 * (1.0 + torch.erf(x / (std * math.sqrt(2.0)))), 1.0 / (std * math.sqrt(2 * math.pi))
    )


def _layer_inits(fan_in: int, fan_out: int) -> list[_Init]:
    """The initialisations a Linear/Conv weight is drawn from by torch, torchvision and the usual recipes."""
    inits = [
        _uniform("torch's default kaiming-uniform (bound 1/sqrt(fan_in))", 1.0 / math.sqrt(fan_in)),
        _normal("kaiming-normal, fan_out (torchvision)", math.sqrt(2.0 / fan_out)),
        _normal("kaiming-normal, fan_in", math.sqrt(2.0 / fan_in)),
        _uniform("kaiming-uniform, fan_in", math.sqrt(6.0 / fan_in)),
        _uniform("xavier-uniform", math.sqrt(6.0 / (fan_in + fan_out))),
        _normal("xavier-normal", math.sqrt(2.0 / (fan_in + fan_out))),
        _uniform("uniform 1/sqrt(fan_out)", 1.0 / math.sqrt(fan_out)),
        _normal("normal(0, 0.01)", 0.01),
        _normal("normal(0, 0.02)", 0.02),
    ]
    return inits


@dataclass
class _Values:
    """A weight tensor as tested: at most SAMPLE of its values as float, its shape and size, its rounding step."""

    sample: torch.Tensor
    shape: torch.Size
    elements: int
    step: float  # the step its values were rounded to (int8: the largest scale; floats: their precision)


def _values_of(value: object) -> _Values | None:
    """A weight (a tensor, or a quantized module's ``weight()``) to test, or None."""
    if callable(value) and not isinstance(value, torch.Tensor):
        try:
            value = value()
        except Exception:
            return None
    if not isinstance(value, torch.Tensor) or value.numel() < MIN_TENSOR_ELEMENTS:
        return None
    if value.is_quantized:
        if value.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            step = float(value.q_scale())
        else:
            step = float(value.q_per_channel_scales().max())
        return _Values(_sample(value.dequantize()).float(), value.shape, value.numel(), step)
    if type(value) not in (torch.Tensor, nn.Parameter) or not value.is_floating_point():
        return None  # tensor subclasses (torchao) and integer tensors are not a draw to test
    sample = _sample(value.detach()).float()  # a float32 copy of at most SAMPLE values, whatever the tensor's size
    step = float(torch.finfo(value.dtype).eps) * float(sample.abs().max())
    return _Values(sample, value.shape, value.numel(), step)


def _sample(values: torch.Tensor) -> torch.Tensor:
    """At most SAMPLE values, an even stride through the tensor (a fresh draw is i.i.d.: any stride is a sample)."""
    flat = values.reshape(-1)
    return flat[:: flat.numel() // SAMPLE] if flat.numel() > SAMPLE else flat


def _ks_distance(sorted_values: torch.Tensor, cdf: _Cdf) -> float:
    n = sorted_values.numel()
    expected = cdf(sorted_values)
    rank = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(rank / n - expected, expected - (rank - 1) / n).max())


def _fresh_draw(values: _Values, inits: list[_Init]) -> str | None:
    """The initialisation ``values`` look freshly drawn from (KS test at alpha 0.001), or None."""
    ordered = torch.sort(values.sample.double()).values
    critical = KS_COEFFICIENT / math.sqrt(ordered.numel())
    for init in inits:
        allowance = (
            values.step / 2 * init.density
        )  # values rounded to a step shift the empirical CDF by this much at most
        if _ks_distance(ordered, init.cdf) <= critical + allowance:
            return init.name
    return None


@dataclass
class _Tested:
    path: str
    elements: int
    init: str | None  # what it looks freshly drawn from; None: not a fresh draw


def _weight_tensors(model: nn.Module) -> Iterator[tuple[str, _Values, list[_Init]]]:
    for path, module in model.named_modules():
        if isinstance(module, nn.RNNBase):
            bound = 1.0 / math.sqrt(module.hidden_size)
            for name, param in module.named_parameters(recurse=False):
                found = _values_of(param)
                if found is not None:
                    yield f"{path}.{name}", found, [_uniform("LSTM/GRU default uniform", bound)]
            continue
        if isinstance(module, nn.Embedding):
            found = _values_of(module.weight)
            if found is not None:
                yield f"{path}.weight", found, [_normal("Embedding's default N(0, 1)", 1.0)]
            continue
        name = type(module).__name__
        if not ("Linear" in name or "Conv" in name):
            continue
        weight = _values_of(getattr(module, "weight", None))
        if weight is None or len(weight.shape) < 2:
            continue
        receptive = math.prod(weight.shape[2:])  # torch's _calculate_fan_in_and_fan_out, on the shape
        fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
        if fan_in == 0 or fan_out == 0:
            continue
        yield f"{path}.weight", weight, _layer_inits(fan_in, fan_out)
        bias = _values_of(getattr(module, "bias", None))
        if bias is not None and bool(bias.sample.any()):  # an all-zero bias is what many inits and no training leave
            bound = 1.0 / math.sqrt(fan_in)
            yield f"{path}.bias", bias, [_uniform("torch's default bias bound 1/sqrt(fan_in)", bound)]


def tested_weights(model: nn.Module) -> list[_Tested]:
    """Every weight tensor of ``model`` worth testing, and what it looks freshly drawn from (None: not a fresh draw)."""
    with torch.no_grad():
        return [
            _Tested(path, values.elements, _fresh_draw(values, inits)) for path, values, inits in _weight_tensors(model)
        ]


def batchnorm_at_init(model: nn.Module) -> list[tuple[str, bool]]:
    """Each BatchNorm with running statistics, and whether they are still at mean 0, var 1, 0 batches tracked."""
    found = []
    for path, module in model.named_modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        mean, var = module.running_mean, module.running_var
        if not module.track_running_stats or mean is None or var is None:
            continue
        tracked = module.num_batches_tracked
        untouched = bool((mean == 0).all()) and bool((var == 1).all()) and (tracked is None or int(tracked) == 0)
        found.append((path, untouched))
    return found


# ---- the script's text: torchvision builders asked for no weights


_NOT_BUILDERS = {"list_models", "get_model_weights", "get_weight", "get_model_builder"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in (None, False)


def builder_calls(script_text: str) -> tuple[list[str], list[int]]:
    """Calls of torchvision model builders (and torch.hub.load) in the script that ask for no pretrained weights
    (``weights=None``, ``pretrained=False``, or neither given), in words, and the lines that load a state dict."""
    try:
        tree = ast.parse(script_text)
    except (SyntaxError, ValueError):
        return [], []
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torchvision.models")
        for alias in node.names
    }
    # what each imported name stands for (`import torchvision.models.quantization as models`, `from torch import ao`):
    # a call is a builder by where it comes from, so `torch.ao.quantization.get_default_qconfig` is not one
    origin = {
        alias.asname or alias.name.split(".")[0]: (
            alias.name if alias.asname or isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
        )
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if isinstance(node, ast.Import) or node.module
    }
    random_builds, loads = [], []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        parts = name.split(".")
        last = parts[-1] if parts else ""
        if last in ("load_state_dict", "load"):
            loads.append(node.lineno)
            continue
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        hub = name.endswith("hub.load")
        root = origin.get(parts[0], "") if len(parts) >= 2 else ""
        resolved = ".".join([*root.split("."), *parts[1:]]) if root else ""
        library = resolved.startswith("torchvision.models.") if resolved else "models" in parts[-3:-1]
        builder = hub or name in imported or (len(parts) >= 2 and library)
        if not builder or not last or not last[0].islower() or last in _NOT_BUILDERS:
            continue
        if "weights" in keywords:
            random = _is_false(keywords["weights"])
            asked = "weights=None"
        elif "pretrained" in keywords:
            random = _is_false(keywords["pretrained"])
            asked = "pretrained=False"
        else:
            positional = [a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, bool)]
            random = not hub and (not positional or not positional[0].value)
            asked = "no weights"
        if random:
            random_builds.append(f"`{name}(...)` at line {node.lineno} builds random weights ({asked})")
    return random_builds, loads


# ---- the verdict


def weights_fact(model: nn.Module | None, substitutions: list[Substitution], script_text: str) -> Weights:
    """Trained, untrained or unknown, from ``model`` (the float baseline, else the subject), the offline stand-ins
    the script used and its text."""
    tested = tested_weights(model) if model is not None else []
    norms = batchnorm_at_init(model) if model is not None else []
    evidence: list[str] = []
    total = sum(t.elements for t in tested)
    fresh = [t for t in tested if t.init is not None]
    share = sum(t.elements for t in fresh) / total if total else 0.0
    weights_tell = total >= MIN_ELEMENTS
    at_init = weights_tell and share >= AT_INIT_SHARE
    if tested:
        inits = sorted({t.init for t in fresh if t.init})
        evidence.append(
            f"{len(fresh)} of {len(tested)} weight tensors ({share:.0%} of {total} values) look freshly drawn"
            + (f" ({'; '.join(inits)})" if inits else "")
            + ("" if weights_tell else f" (too few values to tell: fewer than {MIN_ELEMENTS})")
        )
    norms_at_init = [p for p, untouched in norms if untouched]
    if norms:
        evidence.append(
            f"{len(norms_at_init)} of {len(norms)} BatchNorm layers at their initial running statistics "
            "(mean 0, var 1, 0 batches tracked)"
        )
    stood_in = [s for s in substitutions if s.kind in WEIGHT_STAND_INS]
    evidence += [f"stand-in: {s.requested} -> {s.instead}" for s in stood_in]
    builds, loads = builder_calls(script_text)
    evidence += builds
    if loads and builds:
        evidence.append(f"the script loads weights (line {loads[0]})")

    def verdict(status: str, reason: str) -> Weights:
        return Weights(
            status,
            reason,
            evidence,
            layers_checked=len(tested),
            layers_at_init=len(fresh),
            batchnorms=len(norms),
            batchnorms_at_init=len(norms_at_init),
        )

    bn_at_init = bool(norms) and len(norms_at_init) == len(norms)
    bn_updated = bool(norms) and not bn_at_init
    if at_init:
        if bn_updated:
            return verdict(
                UNTRAINED,
                "every weight is still at its initial random draw (BatchNorm statistics moved: it ran in train "
                "mode, but nothing trained it)",
            )
        return verdict(UNTRAINED, "every weight is still at its initial random draw")
    if bn_at_init:
        return verdict(UNTRAINED, "BatchNorm running statistics at their initial values: the model never trained")
    if stood_in and not (bn_updated and weights_tell):
        return verdict(UNTRAINED, f"random weights stood in for {stood_in[0].requested}")
    if weights_tell or bn_updated:
        why = "weights away from any default initialisation" if weights_tell else "BatchNorm statistics updated"
        return verdict(TRAINED, why)
    if builds and not loads:
        return verdict(UNTRAINED, builds[0])
    return verdict(UNKNOWN, "too few weights and no BatchNorm statistics to tell" if model is not None else "no model")
