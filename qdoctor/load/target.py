"""Load a target the way a user pastes it into a bug report.

A target is a script (``model.py``) or ``package.module:attribute``. The script runs as a module that is not
``__main__``, with its folder on ``sys.path``, its stdout/stderr captured and an empty stdin. If it raises part-way,
the globals defined up to the crash are kept and the crash becomes a fact. Then the subject (the model to check),
its float baseline and the example inputs are picked: by the contract names first, else by what the globals hold.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import linecache
import sys
import tokenize
import types
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qdoctor.errors import NoModelError, ScriptFailedError, TargetError
from qdoctor.facts import SourceLocation, Target, TensorInfo
from qdoctor.facts.location import crash_info, first_line
from qdoctor.introspect.kinds import classify, quantization_level

SUBJECT_FUNCS = ("build_model",)
SUBJECT_NAMES = ("quantized_model", "model")
FLOAT_FUNCS = ("build_float_model",)
FLOAT_NAMES = ("float_model",)
INPUT_FUNCS = ("get_example_inputs",)
INPUT_NAMES = ("example_inputs",)
# Names users give their input tensors in triage scripts, most telling first.
INPUT_NAME_HINTS = ("example", "input", "dummy", "sample", "data", "img", "image", "x")

MAX_CAPTURED_CHARS = 64_000
MODULE_NAME = "__qdoctor_target__"


@dataclass
class LoadedTarget:
    """The live objects behind a target. Never handed to rules: facts are gathered from it once."""

    target: Target
    subject: nn.Module
    float_baseline: nn.Module | None
    inputs: tuple[Any, ...]
    namespace: dict[str, Any]
    calibration_data: Callable[[], Any] | None = None
    evaluate: Callable[[nn.Module], float] | None = None
    origins: weakref.WeakKeyDictionary[nn.Module, SourceLocation] = field(default_factory=weakref.WeakKeyDictionary)
    user_engine: str = ""  # torch.backends.quantized.engine when the script finished
    user_num_threads: int = 0
    saved_format: str | None = None  # TARGET was a saved model: "torchscript", "exported_program", "pickle"


class _BoundedText(io.TextIOBase):
    """A text sink that keeps the first MAX_CAPTURED_CHARS characters and counts the rest."""

    def __init__(self, limit: int = MAX_CAPTURED_CHARS) -> None:
        self._parts: list[str] = []
        self._kept = 0
        self._dropped = 0
        self._limit = limit

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:  # type: ignore[override]
        room = self._limit - self._kept
        if room > 0:
            self._parts.append(text[:room])
            self._kept += min(len(text), room)
        self._dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def getvalue(self) -> str:
        text = "".join(self._parts)
        if self._dropped:
            text += f"\n[qdoctor: {self._dropped} more characters of output not kept]\n"
        return text


@contextlib.contextmanager
def _record_module_origins(user_file: str, origins: weakref.WeakKeyDictionary) -> Any:
    """While the script runs, note the user's line that created each nn.Module.

    torch has no global module-creation hook, so nn.Module.__init__ is wrapped for the duration and restored.
    """
    original_init = nn.Module.__init__
    user_path = str(Path(user_file).resolve())

    def init(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename == user_path or frame.f_code.co_filename == user_file:
                line = frame.f_lineno
                code = linecache.getline(frame.f_code.co_filename, line).strip()
                try:
                    origins[self] = SourceLocation(user_path, line, code)
                except TypeError:  # a module that cannot be weakly referenced
                    pass
                break
            frame = frame.f_back

    nn.Module.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.__init__ = original_init  # type: ignore[method-assign]


def _decode_source(path: Path, raw: bytes) -> str:
    """The script's text, decoded as Python would: UTF-8 unless a coding declaration (PEP 263) says otherwise."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError:  # undecodable first lines, or a coding declaration naming no known codec
        encoding = "utf-8"
    try:
        return raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        start = getattr(exc, "start", 0)
        line = raw[:start].count(b"\n") + 1
        name = "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        raise TargetError(
            f"{path} is not {name} text (line {line}, byte 0x{raw[start]:02x}): save it as UTF-8 "
            "or declare its encoding on the first line (# -*- coding: latin-1 -*-)"
        ) from None


def _run_script(path: Path, origins: weakref.WeakKeyDictionary, target: Target) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TargetError(f"cannot read {path}: {exc.strerror or exc}") from None
    source = _decode_source(path, raw)
    target.script_text = source
    try:
        code = compile(source, str(path.resolve()), "exec")
    except SyntaxError as exc:
        raise TargetError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None

    module = types.ModuleType(MODULE_NAME)
    module.__file__ = str(path.resolve())
    namespace = module.__dict__
    stdout, stderr = _BoundedText(), _BoundedText()
    folder = str(path.resolve().parent)
    saved_path, saved_argv, saved_stdin = list(sys.path), list(sys.argv), sys.stdin
    sys.path.insert(0, folder)
    sys.argv = [str(path)]
    # An empty stdin: a script that reads it gets end-of-file at once instead of waiting for a terminal.
    sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    # Registered so that classes defined in the script can be pickled (torch.save) and deep-copied.
    sys.modules[MODULE_NAME] = module
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
            _record_module_origins(str(path), origins),
        ):
            warnings.simplefilter("always")
            try:
                exec(code, namespace)
            except KeyboardInterrupt:
                raise
            except ModuleNotFoundError as exc:
                if not _defines_any_module(namespace):
                    raise ScriptFailedError(
                        f"{path}: the script imports '{exc.name}', which is not installed ({exc})",
                        str(exc),
                        exc.name,
                        explained=f"{path}: the script imports '{exc.name}': {{hint}}",
                    ) from None
                target.load_crash = crash_info(exc, "load", str(path))
            except BaseException as exc:
                target.load_crash = crash_info(exc, "load", str(path))
    finally:
        sys.path[:] = saved_path
        sys.argv = saved_argv
        sys.stdin = saved_stdin
    target.user_stdout = stdout.getvalue()
    target.user_stderr = stderr.getvalue()
    seen: set[str] = set()
    for w in caught:
        text = f"{w.category.__name__}: {w.message}".split("\n")[0][:300]
        if text not in seen:
            seen.add(text)
            target.warnings.append(text)
    return namespace


def _defines_any_module(namespace: dict[str, Any]) -> bool:
    return any(isinstance(v, nn.Module) for v in namespace.values())


def _import_attribute(spec: str) -> tuple[dict[str, Any], Any]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TargetError(f"cannot import '{module_name}': {exc}") from None
    except Exception as exc:
        raise TargetError(f"importing '{module_name}' raised {type(exc).__name__}: {exc}") from None
    if not hasattr(module, attr):
        raise TargetError(f"'{module_name}' has no attribute '{attr}'")
    return vars(module), getattr(module, attr)


# --------------------------------------------------------------------------------------------- picking objects


def _leaf_paths(model: nn.Module) -> set[str]:

    skip = {"observer", "fake_quant", "quant_stub", "dequant_stub"}
    paths = set()
    for name, module in model.named_modules():
        if not name or classify(module) in skip or name.endswith("activation_post_process"):
            continue
        if not any(True for _ in module.children()) or classify(module) != "container":
            paths.add(name)
    return paths


def _same_structure(a: nn.Module, b: nn.Module) -> bool:
    pa, pb = _leaf_paths(a), _leaf_paths(b)
    if not pa or not pb:
        return False
    # Fused or converted modules keep their paths; fusion replaces followers with Identity, so paths survive.
    return len(pa & pb) / len(pa | pb) >= 0.5


def _call(name: str, func: Callable[..., Any], target: Target, *args: Any) -> Any:
    """Call one of the script's contract functions, capturing its output and warnings like the script's own."""
    stdout, stderr = _BoundedText(), _BoundedText()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            warnings.simplefilter("ignore")
            return func(*args)
    except Exception as exc:
        raise TargetError(
            f"{name}() raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
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


def _pick_subject(namespace: dict[str, Any], target: Target) -> tuple[str, nn.Module]:
    for func in SUBJECT_FUNCS:
        if callable(namespace.get(func)):
            model = _call(func, namespace[func], target)
            if not isinstance(model, nn.Module):
                raise TargetError(f"{func}() returned {type(model).__name__}, not a torch.nn.Module")
            return f"{func}()", model
    candidates = _modules_in(namespace)
    if not candidates:
        if target.load_crash:
            c = target.load_crash
            where = f" at line {c.line}" if c.line else ""
            stdin = " (it read stdin, which qdoctor leaves empty)" if c.type == "EOFError" else ""
            text = (
                f"the script raised {c.type}{where}{stdin} before defining any nn.Module: {first_line(c.message)[:200]}"
            )
            raise ScriptFailedError(text, c.message, explained=text.replace("{", "{{").replace("}", "}}") + "; {hint}")
        raise NoModelError("no torch.nn.Module found in the target (define `model` or `build_model()`)")
    if isinstance(namespace.get("quantized_model"), nn.Module):
        return "quantized_model", namespace["quantized_model"]
    levels = [(quantization_level(m), i, name, m) for i, (name, m) in enumerate(candidates)]
    best = max(levels, key=lambda t: (t[0], t[1]))
    if best[0] > 0:
        return best[2], best[3]
    if isinstance(namespace.get("model"), nn.Module):
        return "model", namespace["model"]
    return best[2], best[3]  # the last float module defined: no quantization in this script


def _float_copy(model: nn.Module) -> nn.Module:
    """A float copy of a prepared (observed) model: observers, their hooks and qconfigs removed."""
    from torch.ao.quantization.quantize import _remove_qconfig

    clone = copy.deepcopy(model)
    _remove_qconfig(clone)
    return clone


def _copy_origins(original: nn.Module, copy_: nn.Module, origins: weakref.WeakKeyDictionary) -> None:
    """A derived float copy never ran __init__: give its modules the creation lines of the originals, by path."""
    by_path = dict(original.named_modules())
    for path, module in copy_.named_modules():
        twin = by_path.get(path)
        source = origins.get(twin) if twin is not None else None
        if source is not None:
            origins[module] = source


def _pick_float(
    namespace: dict[str, Any], subject_name: str, subject: nn.Module, target: Target
) -> tuple[str | None, nn.Module | None]:
    for func in FLOAT_FUNCS:
        if callable(namespace.get(func)):
            model = _call(func, namespace[func], target)
            if isinstance(model, nn.Module):
                return f"{func}()", model
    for name in FLOAT_NAMES:
        if isinstance(namespace.get(name), nn.Module):
            return name, namespace[name]
    if subject_name.endswith("()"):
        return None, None
    float_like: list[tuple[int, str, nn.Module]] = []
    for name, model in _modules_in(namespace):
        if model is subject:
            continue
        level = quantization_level(model)
        if level <= 2 and _same_structure(model, subject):
            float_like.append((level, name, model))
    if not float_like:
        return None, None
    level, name, model = min(float_like, key=lambda t: t[0])
    if level == 2:
        # The script prepared its float model in place (observers attached): compare against a clean copy.
        from qdoctor.introspect.kinds import classify

        if any(classify(m) in ("fake_quant", "qat") for m in model.modules()):
            return None, None
        target.float_derived = f"a copy of `{name}` with its observers removed (it was prepared in place)"
        return name, _float_copy(model)
    return name, model


def _as_inputs(value: Any, name: str) -> tuple[Any, ...]:
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, torch.Tensor) for v in value):
        return tuple(value)
    raise TargetError(f"{name} must be a tensor or a tuple of tensors, got {type(value).__name__}")


def _first_layer_input(model: nn.Module) -> tuple[torch.Tensor, str] | None:
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


def _accepts(model: nn.Module, inputs: tuple[Any, ...]) -> bool:
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            copy.deepcopy(model).eval()(*inputs)
        return True
    except Exception:
        return False


def _pick_inputs(
    namespace: dict[str, Any], subject: nn.Module, float_baseline: nn.Module | None, target: Target
) -> tuple[Any, ...]:
    for func in INPUT_FUNCS:
        if callable(namespace.get(func)):
            target.inputs_name = f"{func}()"
            return _as_inputs(_call(func, namespace[func], target), f"{func}()")
    for name in INPUT_NAMES:
        if name in namespace:
            target.inputs_name = name
            return _as_inputs(namespace[name], name)
    tensors = [
        (n, v)
        for n, v in namespace.items()
        if isinstance(v, torch.Tensor) and not n.startswith("_") and v.dim() >= 1 and not v.is_quantized
    ]

    def rank(item: tuple[str, torch.Tensor]) -> int:
        lowered = item[0].lower()
        return next((i for i, hint in enumerate(INPUT_NAME_HINTS) if hint in lowered), len(INPUT_NAME_HINTS))

    tensors.sort(key=rank)
    if len(tensors) == 1:
        target.inputs_name = tensors[0][0]
        return (tensors[0][1],)
    probe = float_baseline if float_baseline is not None else subject
    for name, tensor in tensors:
        if _accepts(probe, (tensor,)):
            target.inputs_name = name
            return (tensor,)
    inferred = _first_layer_input(float_baseline if float_baseline is not None else subject)
    if inferred is None:
        raise TargetError("no example inputs: define `example_inputs` (a tensor or tuple) or `get_example_inputs()`")
    tensor, how = inferred
    target.inputs_inferred = f"no input tensor in the script; made a random one from the first layer {how}"
    return (tensor,)


def _optional_callable(namespace: dict[str, Any], name: str) -> Callable[..., Any] | None:
    value = namespace.get(name)
    if value is None:
        return None
    if callable(value):
        return value
    if name == "calibration_data":
        return lambda: value  # an iterable given directly
    return None


_PROBE_SIZES = (224, 112, 96, 64, 56, 32, 28, 16, 8)


def _input_size_that_runs(model: nn.Module, tensor: torch.Tensor, how: str) -> tuple[torch.Tensor, str]:
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


def _load_saved_target(path: Path, target: Target, trust: bool) -> LoadedTarget:
    """A saved model file as TARGET (see qdoctor.load.saved): no script, no float baseline."""
    from qdoctor.load.saved import load_saved

    saved = load_saved(path, trust=trust)
    target.file = None
    target.subject_name = saved.subject_name
    inputs = saved.inputs
    if inputs is None:
        inferred = _first_layer_input(saved.subject)
        if inferred is None:
            raise TargetError(
                f"{path}: cannot tell what input the model takes (the file records no input shape); pass a .py "
                "script that loads it and defines `example_inputs`"
            )
        tensor, how = _input_size_that_runs(saved.subject, *inferred)
        inputs = (tensor,)
        target.inputs_inferred = f"the saved model records no inputs; made a random one from the first layer {how}"
    elif saved.inputs_how:
        target.inputs_inferred = saved.inputs_how
    else:
        target.inputs_name = "the example inputs saved with the program"
    target.inputs = [
        TensorInfo(str(t.dtype), list(t.shape), bool(t.is_quantized)) for t in inputs if isinstance(t, torch.Tensor)
    ]
    return LoadedTarget(
        target=target,
        subject=saved.subject,
        float_baseline=None,
        inputs=inputs,
        namespace={},
        user_engine=torch.backends.quantized.engine,
        user_num_threads=torch.get_num_threads(),
        saved_format=saved.saved_format,
    )


def load_target(spec: str, *, trust: bool = False) -> LoadedTarget:
    """Run the target and pick subject, float baseline and inputs. Raises TargetError when nothing can be checked.

    A saved model file (.pt/.pth/.pt2) is loaded instead of run; a pickled full model only with ``trust=True``.
    """
    origins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    path = Path(spec)
    looks_like_file = spec.endswith(".py") or path.exists() or "/" in spec or ":" not in spec
    target = Target(spec=spec, file=None, subject_name="", float_name=None, inputs_name=None, inputs=[])
    if looks_like_file:
        if path.is_dir():
            raise TargetError(f"{spec} is a directory; pass a model .py file")
        if not path.exists():
            raise TargetError(f"no such file: {spec}")
        from qdoctor.load.saved import SAVED_SUFFIXES

        if path.suffix in SAVED_SUFFIXES:
            return _load_saved_target(path, target, trust)
        target.file = str(path.resolve())
        namespace = _run_script(path, origins, target)
        user_engine = torch.backends.quantized.engine
        user_threads = torch.get_num_threads()
        subject_name, subject = _pick_subject(namespace, target)
    else:
        namespace, value = _import_attribute(spec)
        user_engine = torch.backends.quantized.engine
        user_threads = torch.get_num_threads()
        attr = spec.partition(":")[2]
        if isinstance(value, nn.Module):
            subject_name, subject = attr, value
        elif callable(value):
            subject = _call(attr, value, target)
            subject_name = f"{attr}()"
            if not isinstance(subject, nn.Module):
                raise TargetError(f"{spec}() returned {type(subject).__name__}, not a torch.nn.Module")
        else:
            raise TargetError(f"{spec} is a {type(value).__name__}, not an nn.Module or a function returning one")
        target.file = getattr(sys.modules.get(spec.partition(":")[0]), "__file__", None)
    target.subject_name = subject_name
    float_name, float_baseline = _pick_float(namespace, subject_name, subject, target)
    target.float_name = float_name
    if target.float_derived and float_baseline is not None and isinstance(namespace.get(float_name or ""), nn.Module):
        _copy_origins(namespace[float_name], float_baseline, origins)  # type: ignore[index]
    inputs = _pick_inputs(namespace, subject, float_baseline, target)
    target.inputs = [
        TensorInfo(str(t.dtype), list(t.shape), bool(t.is_quantized)) for t in inputs if isinstance(t, torch.Tensor)
    ]
    calibration = _optional_callable(namespace, "calibration_data")
    evaluate = _optional_callable(namespace, "evaluate")
    target.has_calibration_data = calibration is not None
    target.has_evaluate = evaluate is not None
    return LoadedTarget(
        target=target,
        subject=subject,
        float_baseline=float_baseline,
        inputs=inputs,
        namespace=namespace,
        calibration_data=calibration,
        evaluate=evaluate,
        origins=origins,
        user_engine=user_engine,
        user_num_threads=user_threads,
    )
