"""Record the quantization flow steps a script runs (prepare, convert, fuse, quantize_dynamic in eager, FX and PT2E):
which model each step took, what it returned, whether it changed its input in place, and the configuration it was
given (an FX ``qconfig_mapping`` and ``backend_config``).

Selection needs this to follow what the script did: ``convert_fx(prepared)`` rewires ``prepared`` in place (its
modules become the int8 ones while its graph still calls the observers), so the prepared model the script calibrated
is no longer a model to check once its converted result exists. The functions are replaced, for the duration of the
script only, in the torch (and, when imported, torchao) modules that hold them, by wrappers that call the original with
the same arguments and return what it returned: the script's calls behave exactly as without qdoctor. A step run
inside another step (``quantize_dynamic`` calls ``convert``) is not the script's and is not recorded.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from qdoctor.facts.location import user_frame

# module -> the flow steps it defines. Re-exports (torch.ao.quantization.convert, torch.quantization.quantize_fx...)
# are found by identity in every loaded module under _PACKAGES.
_STEPS = {
    "torch.ao.quantization.quantize": (
        "prepare",
        "prepare_qat",
        "convert",
        "quantize",
        "quantize_dynamic",
        "quantize_qat",
    ),
    "torch.ao.quantization.quantize_fx": (
        "prepare_fx",
        "prepare_qat_fx",
        "convert_fx",
        "convert_to_reference_fx",
        "fuse_fx",
    ),
    "torch.ao.quantization.fuse_modules": ("fuse_modules", "fuse_modules_qat"),
    "torchao.quantization.pt2e.quantize_pt2e": ("prepare_pt2e", "prepare_qat_pt2e", "convert_pt2e"),
    "torch.ao.quantization.quantize_pt2e": ("prepare_pt2e", "prepare_qat_pt2e", "convert_pt2e"),
}
_PACKAGES = ("torch.ao.quantization", "torch.quantization", "torchao.quantization")
CONVERT_STEPS = frozenset({"convert", "convert_fx", "convert_to_reference_fx", "convert_pt2e"})
PREPARE_STEPS = frozenset(
    {"prepare", "prepare_qat", "prepare_fx", "prepare_qat_fx", "prepare_pt2e", "prepare_qat_pt2e"}
)


@dataclass
class FlowStep:
    """One flow step the script ran (references to its models, not copies)."""

    step: str  # "convert_fx"
    model: nn.Module  # the model it was given
    result: nn.Module | None  # what it returned (the same object for an in-place step)
    mutated: bool  # the model it was given had its modules replaced in place
    line: int | None  # the user's line that ran it
    qconfig_mapping: Any = None  # FX: the QConfigMapping (or qconfig dict) it was given
    backend_config: Any = None  # FX: the BackendConfig it was given


@dataclass
class FlowLog:
    steps: list[FlowStep] = field(default_factory=list)
    failures: int = 0  # steps that could not be recorded (recording never changes what the script does)

    def consumed(self) -> list[FlowStep]:
        """Convert steps that returned another object than the model they took: that model is spent (in FX and PT2E
        it was rewired in place; in eager mode it stays a prepared model) while the result holds the converted one."""
        return [s for s in self.steps if s.step in CONVERT_STEPS and s.result is not None and s.result is not s.model]

    def spent(self, model: nn.Module, alive: Callable[[nn.Module], bool]) -> FlowStep | None:
        """The convert step that consumed ``model`` when its result is still ``alive`` (held by the script): the last
        one, when a loop converted the same model each epoch (its result is what the script holds at the end)."""
        for found in reversed(self.consumed()):
            if found.model is model and found.result is not None and alive(found.result):
                return found
        return None

    def mutated_by(self, model: nn.Module) -> FlowStep | None:
        """The step that changed ``model``'s modules in place and returned another object (it is not a float twin)."""
        return next((s for s in self.steps if s.model is model and s.mutated and s.result is not model), None)

    def fx_configs(self) -> tuple[Any, Any]:
        """The ``qconfig_mapping`` and ``backend_config`` of the last FX prepare (or convert) that had them."""
        qconfig_mapping = backend_config = None
        for s in self.steps:
            if s.qconfig_mapping is not None and s.step in PREPARE_STEPS:
                qconfig_mapping = s.qconfig_mapping
            if s.backend_config is not None:
                backend_config = s.backend_config
        return qconfig_mapping, backend_config


def _layout(model: Any) -> list[tuple[str, type]] | None:
    if not isinstance(model, nn.Module):
        return None
    return [(name, type(module)) for name, module in model.named_modules()]


def _bound(signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The step's arguments by parameter name ({} when they do not bind: the step itself will say why)."""
    if signature is None:
        return {}
    try:
        return dict(signature.bind_partial(*args, **kwargs).arguments)
    except TypeError:
        return {}


def _wrap(original: Callable[..., Any], record: Callable[..., None], depth: list[int]) -> Callable[..., Any]:
    try:
        signature: inspect.Signature | None = inspect.signature(original)
    except (TypeError, ValueError):
        signature = None

    @functools.wraps(original)
    def run_step(*args: Any, **kwargs: Any) -> Any:
        if depth[0]:
            return original(*args, **kwargs)
        bound = _bound(signature, args, kwargs)
        model = args[0] if args else bound.get("model", bound.get("graph_module"))
        before = None
        with contextlib.suppress(Exception):
            before = _layout(model)
        depth[0] += 1
        try:
            result = original(*args, **kwargs)
        finally:
            depth[0] -= 1
        record(original.__name__, model, result, before, bound)
        return result

    return run_step


@contextlib.contextmanager
def recording_flow_steps(user_file: str | None, log: FlowLog, source: str = "") -> Iterator[FlowLog]:
    """While the script runs, record into ``log`` the flow steps it runs (see the module docstring). The PT2E steps
    live in torchao, which is imported here first only when ``source`` (the script) names one of them."""
    user_path = str(Path(user_file).resolve()) if user_file else None
    depth = [0]

    def record(step: str, model: Any, result: Any, before: Any, bound: dict[str, Any]) -> None:
        try:
            if not isinstance(model, nn.Module):
                return
            found = user_frame(sys._getframe(2), user_path) if user_path else None
            fx = step.endswith("_fx")
            log.steps.append(
                FlowStep(
                    step=step,
                    model=model,
                    result=result if isinstance(result, nn.Module) else None,
                    mutated=before is not None and _layout(model) != before,
                    line=found.line if found else None,
                    qconfig_mapping=bound.get("qconfig_mapping", bound.get("qconfig_dict")) if fx else None,
                    backend_config=bound.get("backend_config") if fx else None,
                )
            )
        except Exception:  # recording must never change what the script does
            log.failures += 1

    replaced: list[tuple[Any, str, Any]] = []
    originals: dict[int, Callable[..., Any]] = {}
    for module_name, names in _STEPS.items():
        module = sys.modules.get(module_name)
        wanted = module_name.startswith("torch.ao.") or any(name in source for name in names)
        if module is None and wanted:
            with contextlib.suppress(Exception):  # an import that fails here fails the same way in the script
                module = importlib.import_module(module_name)
        for name in names:
            original = getattr(module, name, None) if module is not None else None
            if callable(original) and id(original) not in originals:
                originals[id(original)] = original
    wrappers = {key: _wrap(fn, record, depth) for key, fn in originals.items()}
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith(_PACKAGES):
            continue
        for name, value in list(vars(module).items()):
            wrapper = wrappers.get(id(value))
            if wrapper is not None and originals[id(value)] is value:
                replaced.append((module, name, value))
                setattr(module, name, wrapper)
    try:
        yield log
    finally:
        for module, name, value in replaced:
            setattr(module, name, value)
        # a module the script imported for the first time meanwhile (the torch.quantization aliases) took the wrapper
        # from its source: it gets the original too
        unwrapped = {id(wrapper): originals[key] for key, wrapper in wrappers.items()}
        for module_name, module in list(sys.modules.items()):
            if module is None or not module_name.startswith(_PACKAGES):
                continue
            for name, value in list(vars(module).items()):
                if id(value) in unwrapped:
                    setattr(module, name, unwrapped[id(value)])
