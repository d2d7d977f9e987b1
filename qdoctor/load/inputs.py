"""Pick the example inputs of a script, as positional arguments of any structure: ``get_example_inputs()`` or
``example_inputs`` when they fit the forward's signature; else the arguments the script itself passed to the subject
(one batch of them when it fed a whole dataset), then to the float baseline; else a tensor global that runs (never a
model's output); else one made from the first layer. Every choice that is not obvious is said in
``target.selection``."""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import warnings
from typing import Any

import torch
from torch import nn

from qdoctor.errors import TargetError
from qdoctor.facts import INPUTS_CONTRACT, INPUTS_INFERRED, INPUTS_SCRIPT, Target
from qdoctor.facts.location import first_line
from qdoctor.introspect.kinds import eager_module
from qdoctor.load import arguments
from qdoctor.load.calls import CallLog
from qdoctor.load.input_fit import about_arity, about_shape
from qdoctor.load.select import call_contract, modules_in
from qdoctor.load.state_inputs import init_hidden_candidates

INPUT_FUNCS = ("get_example_inputs",)
INPUT_NAMES = ("example_inputs",)
# Names users give their input tensors in triage scripts, most telling first.
INPUT_NAME_HINTS = ("example", "input", "dummy", "sample", "data", "img", "image", "x")


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
        record = self.calls.of(model) if self.calls is not None else None
        fallback = record.local if record is not None and record.local else type(eager_module(model)).__name__
        return next((n for n, m in modules_in(self.namespace) if m is model), fallback)

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

        def usable(v: Any) -> bool:
            return isinstance(v, torch.Tensor) and v.dim() >= 1 and not v.is_quantized

        # a tensor, or a tuple of tensors the script keeps as the model's arguments (`sample_inputs = (x,)`)
        tensors = [
            (n, v)
            for n, v in self.namespace.items()
            if not n.startswith("_") and (usable(v) or (type(v) is tuple and v and all(usable(t) for t in v)))
        ]
        outputs = [n for n, v in tensors if self.calls is not None and self.calls.is_output(v)]
        tensors = [(n, v) for n, v in tensors if n not in outputs]

        def rank(item: tuple[str, Any]) -> int:
            lowered = item[0].lower()
            return next((i for i, hint in enumerate(INPUT_NAME_HINTS) if hint in lowered), len(INPUT_NAME_HINTS))

        tensors.sort(key=rank)
        skipped = (
            f"; skipped {', '.join(f'`{n}`' for n in outputs)} (outputs of the script's models)" if outputs else ""
        )
        for name, value in tensors:
            args = value if isinstance(value, tuple) else (value,)
            error = _run_error(self.probe, args)
            if error is None or not about_shape(error):
                # it runs, or fails for a reason that is not its shape (a quantization defect: the trace's to tell)
                self.target.inputs_name, self.target.inputs_origin = name, INPUTS_SCRIPT
                if skipped or self.rejected:
                    self.target.selection.append(f"inputs: `{name}`, a tensor global of the script{skipped}")
                return args
            self.rejected.append(f"`{name}` ({arguments.shapes(value)}): {first_line(str(error))[:100]}")
            if self.misfit is None and isinstance(value, torch.Tensor):
                self.misfit = (name, value)
        return None

    def inferred(self) -> tuple[Any, ...]:
        """A random input made from the first layer; extra required forward arguments (an LSTM's state) passed as
        None when the model takes that. When that does not run either, the script's own misfit tensor (the input
        check then names the layer that rejects it); TargetError when the forward needs arguments qdoctor cannot
        make up."""
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
        if any(about_arity(e) for e in errors):
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
    """The example inputs, as positional arguments of any structure: ``get_example_inputs()`` or ``example_inputs``
    when they fit the forward's signature (or the script never called its models); else the arguments the script
    itself passed to the subject, then to the float baseline; else a tensor global that runs; else one made from the
    first layer. Each fallback is said in ``target.selection``."""
    probe = float_baseline if float_baseline is not None else subject
    ran = calls is not None and any(calls.of(m) is not None for m in (subject, float_baseline) if m is not None)
    contract: list[tuple[str, Any]] = [(f"{f}()", namespace[f]) for f in INPUT_FUNCS if callable(namespace.get(f))]
    contract += [(name, namespace[name]) for name in INPUT_NAMES if name in namespace]
    for name, value in contract[:1]:
        given = call_contract(name[:-2], value, target) if name.endswith("()") else value
        contract_args = _contract_arguments(probe, given, name)
        misfit = arguments.forward_misfit(probe, contract_args)
        if misfit is None or not ran:
            target.inputs_name, target.inputs_origin = name, INPUTS_CONTRACT
            return contract_args
        target.selection.append(
            f"`{name}` is the script's own value, not the contract's example inputs: {misfit}; the arguments the "
            "script passed to its models are used instead"
        )
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
