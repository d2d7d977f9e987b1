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
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from torch import nn

from qdoctor.errors import NoModelError, ScriptFailedError, TargetError
from qdoctor.facts import Target
from qdoctor.facts.location import first_line
from qdoctor.introspect.flow import model_flow
from qdoctor.introspect.kinds import classify, eager_module
from qdoctor.load import arguments
from qdoctor.load.calls import CallLog, ModelCalls
from qdoctor.load.flow_steps import FlowLog
from qdoctor.load.script import BoundedText

SUBJECT_FUNCS = ("build_model",)
SUBJECT_NAMES = ("quantized_model", "model")
FLOAT_FUNCS = ("build_float_model",)
FLOAT_NAMES = ("float_model",)


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


def modules_in(namespace: dict[str, Any]) -> list[tuple[str, nn.Module]]:
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
    held = {id(m) for _, m in modules_in(namespace)}
    found = []
    for model, record in calls.called() if calls is not None else []:
        if id(model) not in held:
            where = f" called at line {record.first.line}" if record.first.line else " called by the script"
            found.append((record.local or f"{type(eager_module(model)).__name__}{where}", model))
    return found


def _has_state(model: nn.Module) -> bool:
    return any(True for _ in model.parameters()) or any(True for _ in model.buffers())


def _count(record: ModelCalls | None) -> int:
    return record.count if record is not None else 0


def _spent(candidates: list[tuple[str, nn.Module]], flows: FlowLog | None, target: Target) -> set[int]:
    """The candidates a convert step consumed while its converted result is still a candidate (convert_fx rewires the
    prepared model in place: it is neither the model the script measured nor a working model). Said in the notes."""
    if flows is None:
        return set()
    names = {id(m): n for n, m in reversed(candidates)}
    spent: set[int] = set()
    for name, model in candidates:
        step = flows.spent(model, lambda result: id(result) in names)
        if step is None or id(model) in spent or step.result is None:
            continue
        spent.add(id(model))
        where = f" at line {step.line}" if step.line else ""
        target.selection.append(
            f"`{name}` is not a subject: {step.step}{where} consumed it and `{names[id(step.result)]}` holds the result"
        )
    return spent


def _times(record: ModelCalls | None) -> str:
    if record is None:
        return "never called by the script"
    where = f", first at line {record.first.line}" if record.first.line else ""
    return f"called {record.count} time{'s' if record.count != 1 else ''} by the script{where}"


def pick_subject(
    namespace: dict[str, Any], target: Target, calls: CallLog | None = None, flows: FlowLog | None = None
) -> tuple[str, nn.Module]:
    """The model to check: ``build_model()``, else the most quantized model, preferring the ones the script ran, the
    converted one it ran last, never a model a convert step consumed while its result exists (``quantized_model``
    holds the subject unless it is not quantized and the script ran a quantized model)."""
    for func in SUBJECT_FUNCS:
        if callable(namespace.get(func)):
            model = call_contract(func, namespace[func], target)
            if not isinstance(model, nn.Module):
                raise TargetError(f"{func}() returned {type(model).__name__}, not a torch.nn.Module")
            return f"{func}()", model
    candidates = modules_in(namespace) + _called_only(namespace, calls)
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
        if target.left_out and target.report_text is None:  # a script's: a download qdoctor cannot make offline
            raise NoModelError(f"no torch.nn.Module could be built: {target.left_out[0]}")
        raise NoModelError("no torch.nn.Module found in the target (define `model` or `build_model()`)")

    def record(model: nn.Module) -> ModelCalls | None:
        return calls.of(model) if calls is not None else None

    named = len(modules_in(namespace))
    spent = _spent(candidates, flows, target)
    ranked = [_Ranked(name, m, i, i < named, record(m)) for i, (name, m) in enumerate(candidates) if id(m) not in spent]
    best = max(ranked, key=lambda r: r.key)
    contract = namespace.get("quantized_model")
    if isinstance(contract, nn.Module) and id(contract) not in spent:
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
    one the script ran, a global before a model only a function held; among quantized models the one the script ran
    last (the converted model it went on to measure), among the others the most often run; the last defined."""

    def __init__(self, name: str, model: nn.Module, index: int, named: bool, calls: ModelCalls | None) -> None:
        self.name, self.model, self.calls = name, model, calls
        self.level = model_flow(model).level
        recency = (calls.last if calls is not None else 0) if self.level == 3 else _count(calls)
        self.key = (self.level, _has_state(model), calls is not None, named, recency, index)


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
    flows: FlowLog | None = None,
) -> tuple[str | None, nn.Module | None]:
    """The float baseline: ``build_float_model()`` or ``float_model``, else a model of the subject's structure
    (eager, FX, PT2E through torch.export and torch.compile, torchao) that is float, preferring one the script ran
    on the same inputs as the subject; never one a flow step rewired in place while returning another model (the
    prepared model that convert_fx consumed)."""
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
    for i, (name, model) in enumerate(modules_in(namespace) + _called_only(namespace, calls)):
        if model is subject or eager_module(model) is eager_module(subject):
            continue
        if flows is not None and flows.mutated_by(model) is not None:
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


# The optional contract functions and the arguments qdoctor calls them with: calibration_data() -> batches,
# evaluate(model) -> a metric.
CONTRACT_CALLS: dict[str, tuple[Any, ...]] = {"calibration_data": (), "evaluate": (None,)}


def contract_callable(namespace: dict[str, Any], name: str, target: Target) -> Callable[..., Any] | None:
    """The script's ``calibration_data`` or ``evaluate`` when it is the contract's: a function with the contract's
    signature (``calibration_data`` may also be an iterable of batches). A function of that name with another signature
    (a tutorial's ``evaluate(model_, data_source)``) is the script's own helper: not called, and said in the notes."""
    value = namespace.get(name)
    if value is None:
        return None
    if callable(value):
        misfit = arguments.signature_misfit(value, CONTRACT_CALLS[name])
        if misfit is None:
            return value
        wanted = "calibration_data() -> batches" if name == "calibration_data" else "evaluate(model) -> float"
        target.selection.append(
            f"`{name}` is the script's own helper, not the contract's `{wanted}` ({misfit}): qdoctor does not call it"
        )
        return None
    if name == "calibration_data" and not isinstance(value, (str, bytes)) and hasattr(value, "__iter__"):
        return lambda: value  # an iterable given directly
    return None
