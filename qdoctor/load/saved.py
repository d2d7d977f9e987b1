"""Saved models as TARGET: a TorchScript archive (torch.jit.save), an ExportedProgram (torch.export.save, .pt2),
or, only with --trust, a pickled full model (torch.save(model)).

TorchScript and .pt2 archives hold no Python objects to unpickle. A full pickle runs whatever code the file
names when it is loaded, so it is loaded only when the user says they trust it; without --trust qdoctor says so
and stops. A state_dict holds no model at all: the script that builds the model is needed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qdoctor.errors import TargetError
from qdoctor.facts.location import exception_line

SAVED_SUFFIXES = (".pt", ".pth", ".pt2", ".ptl", ".bin")


@dataclass
class SavedModel:
    subject: nn.Module
    subject_name: str
    saved_format: str  # "torchscript", "exported_program", "pickle"
    inputs: tuple[Any, ...] | None  # None: infer from the first layer
    inputs_how: str | None = None  # how the inputs were made, for the report


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """torch.export.load logs whole graphs and tracebacks through `logging` before raising: keep them out."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def archive_kind(path: Path) -> str:
    """ "torchscript", "exported_program", "pickle" (a torch.save zip or legacy pickle), by the archive's contents."""
    if not zipfile.is_zipfile(path):
        return "pickle"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(n.endswith("/archive_format") or n == "archive_format" or "/models/" in n for n in names) or any(
        n.endswith("serialized_exported_program.json") for n in names
    ):
        return "exported_program"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    return "pickle"


def _placeholder_inputs(graph_module: torch.fx.GraphModule) -> tuple[Any, ...] | None:
    """Random inputs shaped like the exported program's placeholders (their recorded fake tensors)."""
    values = []
    for node in graph_module.graph.nodes:
        if node.op != "placeholder":
            continue
        fake = node.meta.get("val")
        if not isinstance(fake, torch.Tensor):
            return None
        try:
            shape = [int(d) for d in fake.shape]
        except (TypeError, ValueError):  # a dynamic dimension: no concrete size
            return None
        if fake.dtype.is_floating_point:
            values.append(torch.randn(*shape, dtype=fake.dtype))
        else:
            values.append(torch.zeros(*shape, dtype=fake.dtype))
    return tuple(values) or None


def _load_exported(path: Path) -> SavedModel:
    # PT2E programs hold quantized_decomposed ops: register them before deserializing.
    import torch.ao.quantization.fx._decomposed

    try:
        with _quiet_loading():
            program = torch.export.load(str(path))
    except Exception as exc:
        raise TargetError(f"{path}: torch.export.load could not read it ({exception_line(exc, 200)})") from None
    module = program.module()
    example = getattr(program, "example_inputs", None)
    inputs = None
    how = None
    if example and isinstance(example, tuple) and example[0] and not example[1]:
        args = tuple(example[0])
        if all(isinstance(a, torch.Tensor) for a in args):
            inputs, how = args, None
    if inputs is None:
        inputs = _placeholder_inputs(module)
        how = "random tensors shaped like the exported program's inputs (the file holds no example inputs)"
    return SavedModel(module, f"torch.export.load({path.name}).module()", "exported_program", inputs, how)


def _load_torchscript(path: Path) -> SavedModel:
    try:
        with _quiet_loading():
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise TargetError(f"{path}: torch.jit.load could not read it ({exception_line(exc, 200)})") from None
    inputs, how = None, None
    try:  # a traced module records the shapes it was traced with
        graph_inputs = list(module.graph.inputs())[1:]
        shapes = [value.type().sizes() for value in graph_inputs]
        if shapes and all(shape and all(isinstance(d, int) for d in shape) for shape in shapes):
            inputs = tuple(torch.randn(*shape) for shape in shapes)
            how = "random tensors of the shapes the TorchScript module was traced with"
    except (RuntimeError, AttributeError, TypeError):
        inputs = None
    return SavedModel(module, f"torch.jit.load({path.name})", "torchscript", inputs, how)


def _load_pickle(path: Path, trust: bool) -> SavedModel:
    try:
        with _quiet_loading():
            value = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as safe_error:
        if not trust:
            raise TargetError(
                f"{path} is a pickled Python object (torch.save(model)): loading it runs code named in the file. "
                "Pass --trust if you trust it, or pass the .py script that builds the model"
            ) from None
        try:
            with _quiet_loading():
                value = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise TargetError(
                f"{path}: could not unpickle it even with --trust ({exception_line(exc, 200)}); "
                "the classes it names must be importable: pass the .py script that builds the model instead"
            ) from None
        del safe_error
    if isinstance(value, torch.jit.ScriptModule):
        return SavedModel(value, f"torch.load({path.name})", "torchscript", None)
    if isinstance(value, nn.Module):
        try:
            value.state_dict()
            list(value.named_modules())
        except AttributeError as exc:  # eager quantized modules lose nn.Module's bookkeeping when unpickled
            raise TargetError(
                f"{path} unpickled into a broken model ({exc}): torch's quantized modules do not survive "
                "torch.save(model)/torch.load; save with torch.jit.save(torch.jit.script(model)) or save the state_dict"
            ) from None
        return SavedModel(value, f"torch.load({path.name})", "pickle", None)
    if isinstance(value, dict) and any(isinstance(v, torch.Tensor) for v in value.values()):
        tensors = sum(isinstance(v, torch.Tensor) for v in value.values())
        raise TargetError(
            f"{path} holds a state_dict ({tensors} tensors), not a model: pass the .py script that builds the "
            "model and loads it (model.load_state_dict(torch.load(...)))"
        )
    raise TargetError(
        f"{path} holds an object of type {type(value).__name__}, not a model: pass the .py script that builds the model"
    )


def load_saved(path: Path, trust: bool = False) -> SavedModel:
    """Load a saved model file. Raises TargetError with one line when it cannot (or may not) be loaded."""
    try:
        kind = archive_kind(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise TargetError(f"cannot read {path}: {exc}") from None
    if kind == "exported_program":
        return _load_exported(path)
    if kind == "torchscript":
        return _load_torchscript(path)
    return _load_pickle(path, trust)
