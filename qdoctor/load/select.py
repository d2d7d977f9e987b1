"""Pick what to check from a script: the subject (the model to check), its float baseline and the example inputs.

The contract names come first (``build_model()``, ``float_model``, ``example_inputs``...). Otherwise what the script
did decides (load/calls.py recorded the calls it made to its models): the subject is the most quantized model, one
the script ran before one it only defined (a ``quantized_model`` that is not quantized gives way to the int8 model
the script ran); the float baseline is a float model of the subject's structure (through torch.compile, torch.export
and wrappers), one run on the subject's inputs first; the inputs are the arguments the script passed to the subject
(one batch of them when it fed a whole dataset), then to the float baseline, then a tensor global that runs (never a
model's output), then one made from the first layer. Every choice that is not obvious is said in
``target.selection``."""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from qdoctor.errors import NoModelError, ScriptFailedError, TargetError
from qdoctor.facts import INPUTS_CONTRACT, INPUTS_INFERRED, INPUTS_SCRIPT, Target
from qdoctor.facts.location import first_line
from qdoctor.introspect.flow import model_flow
from qdoctor.introspect.kinds import classify, eager_module
from qdoctor.load import arguments
from qdoctor.load.calls import CallLog, ModelCalls
from qdoctor.load.script import BoundedText
from qdoctor.load.state_inputs import init_hidden_candidates

SUBJECT_FUNCS = ("build_model",)
SUBJECT_NAMES = ("quantized_model", "model")
FLOAT_FUNCS = ("build_float_model",)
FLOAT_NAMES = ("float_model",)
INPUT_FUNCS = ("get_example_inputs",)
INPUT_NAMES = ("example_inputs",)
# Names users give their input tensors in triage scripts, most telling first.
INPUT_NAME_HINTS = ("example", "input", "dummy", "sample", "data", "img", "image", "x")


def _leaf_paths(model: nn.Module) -> set[str]:

    skip = {"observer", "fake_quant", "quant_stub", "dequant_stub"}
    paths = set()
    for name, module in eager_module(model).named_modules():
        if (
            not name
            or classify(module) in skip
            or name.endswith(("activation_post_process", "_guards_fn", "_packed_params"))
        ):
            continue
        if not any(True for _ in module.children()) or classify(module) != "container":
            paths.add(name)
    return paths


def _same_structure(a: nn.Module, b: nn.Module) -> bool:
    return _structure_overlap(a, b) >= 0.5


def _structure_overlap(a: nn.Module, b: nn.Module) -> float:
    """How much two models' module paths agree (0..1). Fused or converted modules keep their paths; fusion replaces
    followers with Identity, so paths survive. A wrapper (QuantWrapper's `module.`, a user's QuantStub wrapper) puts
    the wrapped model's paths under one name."""
    pa, pb = _leaf_paths(a), _leaf_paths(b)
    if not pa or not pb:
        return 0.0
    return max(_overlap(pa, pb), _overlap(_unwrapped(pa), pb), _overlap(pa, _unwrapped(pb)))


def _overlap(pa: set[str], pb: set[str]) -> float:
    return len(pa & pb) / len(pa | pb) if pa and pb else 0.0


def _unwrapped(paths: set[str]) -> set[str]:
    """The paths under the wrapper's most common first name (``model_fp32.conv1`` -> ``conv1``)."""
    heads = [p.partition(".")[0] for p in paths if "." in p]
    if not heads:
        return paths
    head = max(set(heads), key=heads.count)
    return {p.partition(".")[2] for p in paths if p.startswith(head + ".")}


def call_contract(name: str, func: Callable[..., Any], target: Target, *args: Any) -> Any:
    """Call one of the script's contract functions, capturing its output and warnings like the script's own."""
    stdout, stderr = BoundedText(), BoundedText()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            warnings.simplefilter("ignore")
            return func(*args)
    except Exception as exc:
        raise TargetError(f"{name}() raised {type(exc).__name__}: {first_line(str(exc))}") from None
    finally:
        target.user_stdout += stdout.getvalue()
        target.user_stderr += stderr.getvalue()


def _modules_in(namespace: dict[str, Any]) -> list[tuple[str, nn.Module]]:
    seen: set[int] = set()
    found = []
    for name, value in namespace.items():
        if name.startswith("__") or not isinstance(value, nn.Module) or id(value) in seen:
            continue
        seen.add(id(value))
        found.append((name, value))
    return found


def _called_only(namespace: dict[str, Any], calls: CallLog | None) -> list[tuple[str, nn.Module]]:
    """Models the script called that no global holds (made and run inside a function), named by the call's line."""
    held = {id(m) for _, m in _modules_in(namespace)}
    found = []
    for model, record in calls.called() if calls is not None else []:
        if id(model) not in held:
            where = f" called at line {record.first.line}" if record.first.line else " called by the script"
            found.append((f"{type(eager_module(model)).__name__}{where}", model))
    return found


def _has_state(model: nn.Module) -> bool:
    return any(True for _ in model.parameters()) or any(True for _ in model.buffers())


def _count(record: ModelCalls | None) -> int:
    return record.count if record is not None else 0


def _times(record: ModelCalls | None) -> str:
    if record is None:
        return "never called by the script"
    where = f", first at line {record.first.line}" if record.first.line else ""
    return f"called {record.count} time{'s' if record.count != 1 else ''} by the script{where}"


def pick_subject(namespace: dict[str, Any], target: Target, calls: CallLog | None = None) -> tuple[str, nn.Module]:
    """The model to check: ``build_model()``, else the most quantized model, preferring the ones the script ran
    (``quantized_model`` holds it unless it is not quantized and the script ran a quantized model)."""
    for func in SUBJECT_FUNCS:
        if callable(namespace.get(func)):
            model = call_contract(func, namespace[func], target)
            if not isinstance(model, nn.Module):
                raise TargetError(f"{func}() returned {type(model).__name__}, not a torch.nn.Module")
            return f"{func}()", model
    candidates = _modules_in(namespace) + _called_only(namespace, calls)
    if not candidates:
        if target.load_crash:
            c = target.load_crash
            where = f" at line {c.line}" if c.line else ""
            stdin = " (it read stdin, which qdoctor leaves empty)" if c.type == "EOFError" else ""
            text = (
                f"the script raised {c.type}{where}{stdin} before defining any nn.Module: {first_line(c.message)[:200]}"
            )
            raise ScriptFailedError(
                text, c.message, explained=text.replace("{", "{{").replace("}", "}}") + "; {hint}", crash=c
            )
        raise NoModelError("no torch.nn.Module found in the target (define `model` or `build_model()`)")

    def record(model: nn.Module) -> ModelCalls | None:
        return calls.of(model) if calls is not None else None

    named = len(_modules_in(namespace))
    ranked = [_Ranked(name, m, i, i < named, record(m)) for i, (name, m) in enumerate(candidates)]
    best = max(ranked, key=lambda r: r.key)
    contract = namespace.get("quantized_model")
    if isinstance(contract, nn.Module):
        level = model_flow(contract).level
        if level == 3 or not (best.level == 3 and best.calls is not None) or best.model is contract:
            return "quantized_model", contract
        stage = "float (not quantized)" if level <= 1 else "prepared (observers), not converted"
        target.selection.append(
            f"subject: `{best.name}`, the quantized model the script ran ({_times(best.calls)}); "
            f"`quantized_model` holds a {stage} model, so it is not what the script measured"
        )
        return best.name, best.model
    if best.level > 0:
        rivals = {id(eager_module(r.model)) for r in ranked if r.level == best.level}
        if best.calls is not None and len(rivals) > 1:
            target.selection.append(
                f"subject: `{best.name}`, the most quantized model the script ran ({_times(best.calls)})"
            )
        return best.name, best.model
    if isinstance(namespace.get("model"), nn.Module):
        return "model", namespace["model"]
    return best.name, best.model  # no quantization in this script: the model it ran the most, else the last defined


class _Ranked:
    """A candidate subject and its rank: the most quantized; a model rather than a loss function (it has weights);
    one the script ran, a global before a model only a function held, the most often run; the last defined."""

    def __init__(self, name: str, model: nn.Module, index: int, named: bool, calls: ModelCalls | None) -> None:
        self.name, self.model, self.calls = name, model, calls
        self.level = model_flow(model).level
        self.key = (self.level, _has_state(model), calls is not None, named, _count(calls), index)


def float_copy(model: nn.Module) -> nn.Module:
    """A float copy of a prepared (observed) model: observers, their hooks and qconfigs removed."""
    from torch.ao.quantization.quantize import _remove_qconfig

    clone = copy.deepcopy(model)
    _remove_qconfig(clone)
    return clone


def copy_origins(original: nn.Module, copy_: nn.Module, origins: weakref.WeakKeyDictionary) -> None:
    """A derived float copy never ran __init__: give its modules the creation lines of the originals, by path."""
    by_path = dict(original.named_modules())
    for path, module in copy_.named_modules():
        twin = by_path.get(path)
        source = origins.get(twin) if twin is not None else None
        if source is not None:
            origins[module] = source


def _shares_arguments(a: ModelCalls | None, b: ModelCalls | None) -> bool:
    """Two models the script called on the same tensor objects (a float model and its int8 copy, benchmarked)."""
    if a is None or b is None:
        return False
    ids = {id(t) for t in a.first.tensors()} | {id(t) for t in a.smallest.tensors()}
    return any(id(t) in ids for t in b.first.tensors() + b.smallest.tensors())


def pick_float(
    namespace: dict[str, Any],
    subject_name: str,
    subject: nn.Module,
    target: Target,
    calls: CallLog | None = None,
) -> tuple[str | None, nn.Module | None]:
    """The float baseline: ``build_float_model()`` or ``float_model``, else a model of the subject's structure
    (eager, FX, PT2E through torch.export and torch.compile, torchao) that is float, preferring one the script ran
    on the same inputs as the subject."""
    for func in FLOAT_FUNCS:
        if callable(namespace.get(func)):
            model = call_contract(func, namespace[func], target)
            if isinstance(model, nn.Module):
                return f"{func}()", model
    for name in FLOAT_NAMES:
        if isinstance(namespace.get(name), nn.Module):
            return name, namespace[name]
    if subject_name.endswith("()"):
        return None, None

    def record(model: nn.Module) -> ModelCalls | None:
        return calls.of(model) if calls is not None else None

    subject_calls = record(subject)
    # (level, not run on the subject's inputs, less alike, definition order): the least quantized, one the script ran
    # on the same inputs as the subject, the closest structure, the first defined.
    float_like: list[tuple[int, bool, float, int, str, nn.Module, bool]] = []
    for i, (name, model) in enumerate(_modules_in(namespace) + _called_only(namespace, calls)):
        if model is subject or eager_module(model) is eager_module(subject):
            continue
        found = model_flow(model)
        overlap = _structure_overlap(model, subject) if found.level <= 2 else 0.0
        if overlap >= 0.5:
            unshared = not _shares_arguments(subject_calls, record(model))
            float_like.append((found.level, unshared, -overlap, i, name, model, found.qat))
    if not float_like:
        return None, None
    level, unshared, _, _, name, model, qat = min(float_like, key=lambda t: t[:4])
    if not unshared and len(float_like) > 1:
        target.selection.append(f"float baseline: `{name}`, which the script ran on the same inputs as the subject")
    if level == 2:
        # The script prepared its float model in place (observers attached): compare against a clean copy.
        if qat:
            return None, None
        target.float_derived = f"a copy of `{name}` with its observers removed (it was prepared in place)"
        return name, float_copy(model)
    return name, model


def first_layer_input(model: nn.Module) -> tuple[torch.Tensor, str] | None:
    for path, module in model.named_modules():
        name = getattr(module, "original_name", None) if isinstance(module, torch.jit.ScriptModule) else None
        name = name or type(module).__name__
        in_ch = getattr(module, "in_channels", None)
        if isinstance(in_ch, int) and "Conv" in name:
            dims = 3 if "3d" in name else 1 if "1d" in name else 2
            spatial = {1: (128,), 2: (224, 224), 3: (16, 112, 112)}[dims]
            shape = (1, in_ch, *spatial)
        elif isinstance(getattr(module, "in_features", None), int):
            shape = (1, module.in_features)
        elif isinstance(module, nn.Embedding) or name.endswith("Embedding"):
            return torch.randint(0, module.num_embeddings, (1, 16)), f"{path or 'root'} ({name}): 1x16 token ids"
        elif isinstance(getattr(module, "input_size", None), int) and hasattr(module, "hidden_size"):
            shape = (1, 16, module.input_size) if getattr(module, "batch_first", False) else (16, 1, module.input_size)
        else:
            continue
        return torch.randn(*shape), f"{path or 'root'} ({name}): {'x'.join(map(str, shape))}"
    return None


def _run_error(model: nn.Module, inputs: tuple[Any, ...]) -> Exception | None:
    """What running a copy of ``model`` (eval mode, no grad) on ``inputs`` raised, or None when it ran."""
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            copy.deepcopy(model).eval()(*inputs)
        return None
    except Exception as exc:
        return exc


def _accepts(model: nn.Module, inputs: tuple[Any, ...]) -> bool:
    return _run_error(model, inputs) is None


def _arity_error(error: Exception | None) -> bool:
    """The forward was called with the wrong number of arguments: qdoctor's guess was wrong, not the model."""
    text = str(error)
    return isinstance(error, TypeError) and ("positional argument" in text or "required argument" in text)


def _required_after_first(model: nn.Module) -> int:
    """How many positional parameters the forward requires beyond the first (an LSTM wrapper's ``hidden``)."""
    try:
        parameters = list(inspect.signature(eager_module(model).forward).parameters.values())
    except (TypeError, ValueError):
        return 0
    required = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is inspect.Parameter.empty
    ]
    return max(0, len(required) - 1)


class _Inputs:
    """Tries input candidates in order and remembers how the chosen one was found."""

    def __init__(
        self,
        namespace: dict[str, Any],
        subject: nn.Module,
        float_baseline: nn.Module | None,
        target: Target,
        calls: CallLog | None,
    ) -> None:
        self.namespace, self.subject, self.target, self.calls = namespace, subject, target, calls
        self.probe = float_baseline if float_baseline is not None else subject
        self.float_baseline = float_baseline
        self.rejected: list[str] = []
        self.misfit: tuple[str, torch.Tensor] | None = None

    def name_of(self, model: nn.Module) -> str:
        return next((n for n, m in _modules_in(self.namespace) if m is model), type(eager_module(model)).__name__)

    def from_calls(self, model: nn.Module, own: bool) -> tuple[Any, ...] | None:
        """The arguments the script passed to ``model`` (one batch of them when it fed a whole dataset).

        The subject's own call (``own``) is taken as the script made it, even when it raised: that is the script's
        crash to diagnose. Another model's arguments must run on the probe."""
        record = self.calls.of(model) if self.calls is not None else None
        if record is None:
            return None
        who = self.name_of(model)
        call = record.first
        rows = arguments.dataset_rows(call.args)
        if rows is not None and arguments.dataset_rows(record.smallest.args) is None:
            call = record.smallest  # the script also ran it on one batch: take that call
            rows = None
        args = arguments.bind_positional(model, call.args, call.kwargs)
        where = f" at line {call.line}" if call.line else ""
        if args is None:
            self.rejected.append(f"`{who}(...)`{where} passes keyword-only arguments")
            return None
        expression = arguments.expression(args, self.namespace) if not call.kwargs else None
        how = f"the arguments the script passed to `{who}`{where} ({arguments.describe(args)})"
        if rows is not None:
            batch = arguments.one_batch(args, rows)
            if _accepts(self.probe, batch):
                how += f", cut to one batch: the script fed {rows} rows at once ({arguments.describe(batch)} here)"
                args = batch
                expression = f"{expression}[:1]" if expression and len(args) == 1 else None
            else:
                how += f" ({rows} rows: a batch of one did not run, so all of them are used)"
        if not own:
            error = _run_error(self.probe, args)
            if error is not None:
                self.rejected.append(f"{how}: {type(error).__name__}: {first_line(str(error))[:120]}")
                return None
        self.target.inputs_name, self.target.inputs_origin = expression, INPUTS_SCRIPT
        self.target.selection.append(f"inputs: {how}")
        return args

    def from_tensors(self) -> tuple[Any, ...] | None:
        """A tensor global of the script that runs on the probe (never a model's own output). A tensor rejected for
        its shape is kept as ``self.misfit``: when nothing else runs either, the report names it."""
        from qdoctor.load.input_fit import about_shape

        tensors = [
            (n, v)
            for n, v in self.namespace.items()
            if isinstance(v, torch.Tensor) and not n.startswith("_") and v.dim() >= 1 and not v.is_quantized
        ]
        outputs = [n for n, v in tensors if self.calls is not None and self.calls.is_output(v)]
        tensors = [(n, v) for n, v in tensors if n not in outputs]

        def rank(item: tuple[str, torch.Tensor]) -> int:
            lowered = item[0].lower()
            return next((i for i, hint in enumerate(INPUT_NAME_HINTS) if hint in lowered), len(INPUT_NAME_HINTS))

        tensors.sort(key=rank)
        skipped = (
            f"; skipped {', '.join(f'`{n}`' for n in outputs)} (outputs of the script's models)" if outputs else ""
        )
        for name, tensor in tensors:
            error = _run_error(self.probe, (tensor,))
            if error is None or not about_shape(error):
                # it runs, or fails for a reason that is not its shape (a quantization defect: the trace's to tell)
                self.target.inputs_name, self.target.inputs_origin = name, INPUTS_SCRIPT
                if skipped or self.rejected:
                    self.target.selection.append(f"inputs: `{name}`, a tensor global of the script{skipped}")
                return (tensor,)
            self.rejected.append(f"`{name}` ({arguments.shapes(tensor)}): {first_line(str(error))[:100]}")
            if self.misfit is None:
                self.misfit = (name, tensor)
        return None

    def inferred(self) -> tuple[Any, ...]:
        """A random input made from the first layer; extra required forward arguments (an LSTM's state) passed as
        None when the model takes that. When that does not run either, the script's own misfit tensor (the input
        check then names the layer that rejects it); TargetError when the forward needs arguments qdoctor cannot
        make up."""
        from qdoctor.load.input_fit import about_shape

        model = self.probe
        made = first_layer_input(model)
        if made is None:
            if self.misfit is not None:
                return self._misfit()
            raise TargetError(
                "no example inputs: define `example_inputs` (a tensor or tuple) or `get_example_inputs()`"
            )
        tensor, how = made
        candidates: list[tuple[tuple[Any, ...], str]] = [((tensor,), "")]
        extra = _required_after_first(model)
        if extra == 1:  # forward(input, hidden): the state the model's own init_hidden() makes, first
            candidates += init_hidden_candidates(eager_module(model), tensor)
        if extra:
            candidates.append(((tensor, *([None] * extra)), f", with None for the {extra} other forward argument(s)"))
        errors: list[Exception] = []
        for args, note in candidates:
            error = _run_error(model, args)
            # None for a model's other arguments is qdoctor's guess: it must run, whatever else fails
            if error is None or (not note and not about_shape(error)):
                self.target.inputs_origin = INPUTS_INFERRED
                self.target.inputs_inferred = (
                    f"no input tensor in the script; made a random one from the first layer {how}{note}"
                )
                return args
            errors.append(error)
        if self.misfit is not None:
            return self._misfit()
        if any(_arity_error(e) for e in errors):
            raise TargetError(
                f"cannot make up inputs for `{self.name_of(model)}`: its forward takes more than the tensor qdoctor "
                f"made from its first layer ({first_line(str(errors[-1]))[:150]}); define `example_inputs` as the "
                "tuple of arguments the model takes"
            )
        self.target.inputs_inferred = f"no input tensor in the script; made a random one from the first layer {how}"
        return candidates[0][0]

    def _misfit(self) -> tuple[Any, ...]:
        assert self.misfit is not None
        name, tensor = self.misfit
        self.target.inputs_name, self.target.inputs_origin = name, INPUTS_SCRIPT
        return (tensor,)


def pick_inputs(
    namespace: dict[str, Any],
    subject: nn.Module,
    float_baseline: nn.Module | None,
    target: Target,
    calls: CallLog | None = None,
) -> tuple[Any, ...]:
    """The example inputs, as positional arguments of any structure: ``get_example_inputs()`` or ``example_inputs``;
    else the arguments the script itself passed to the subject, then to the float baseline; else a tensor global that
    runs; else one made from the first layer. Each fallback is said in ``target.selection``."""
    probe = float_baseline if float_baseline is not None else subject
    for func in INPUT_FUNCS:
        if callable(namespace.get(func)):
            target.inputs_name, target.inputs_origin = f"{func}()", INPUTS_CONTRACT
            return _contract_arguments(probe, call_contract(func, namespace[func], target), f"{func}()")
    for name in INPUT_NAMES:
        if name in namespace:
            target.inputs_name, target.inputs_origin = name, INPUTS_CONTRACT
            return _contract_arguments(probe, namespace[name], name)
    chooser = _Inputs(namespace, subject, float_baseline, target, calls)
    found = chooser.from_calls(subject, own=True)
    if found is None and float_baseline is not None:
        found = chooser.from_calls(float_baseline, own=False)
    if found is None:
        found = chooser.from_tensors()
    if found is None:
        found = chooser.inferred()
    if chooser.rejected:
        target.selection.append("inputs tried first: " + "; ".join(chooser.rejected))
    return found


def _contract_arguments(model: nn.Module, value: Any, name: str) -> tuple[Any, ...]:
    found = arguments.as_arguments(model, value)
    if found is None:
        raise TargetError(
            f"{name} must be a tensor, a tuple of the forward's arguments (nested tuples and dicts allowed) or a dict "
            f"of its keyword arguments, got {type(value).__name__}"
        )
    return found


def optional_callable(namespace: dict[str, Any], name: str) -> Callable[..., Any] | None:
    value = namespace.get(name)
    if value is None:
        return None
    if callable(value):
        return value
    if name == "calibration_data":
        return lambda: value  # an iterable given directly
    return None


_PROBE_SIZES = (224, 112, 96, 64, 56, 32, 28, 16, 8)


def input_size_that_runs(model: nn.Module, tensor: torch.Tensor, how: str) -> tuple[torch.Tensor, str]:
    """A saved image model records no input size: try common sizes until one runs (a Linear after Flatten fixes it)."""
    if tensor.dim() != 4 or _accepts(model, (tensor,)):
        return tensor, how
    for size in _PROBE_SIZES:
        candidate = torch.randn(tensor.shape[0], tensor.shape[1], size, size)
        if _accepts(model, (candidate,)):
            shape = "x".join(map(str, candidate.shape))
            return candidate, how.rsplit(": ", 1)[
                0
            ] + f": {shape} (the first of {'/'.join(map(str, _PROBE_SIZES))} px that runs)"
    return tensor, how
