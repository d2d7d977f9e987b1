"""--save-fixed: write the "fix all" model, TorchScript when it scripts or traces, else its state_dict plus the code
that rebuilds it. Written atomically (qdoctor.files), so a failure leaves no half-written file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from qdoctor.facts.location import exception_line
from qdoctor.facts.prescription import SavedFixed
from qdoctor.files import atomic_path
from qdoctor.introspect.state import preserved_torch_state, quantized_engine, quiet


def _scripted(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, str]:
    """(the model as TorchScript, how it was made), or (None, "") when neither script nor trace works."""
    for how, make in (
        ("torch.jit.script", lambda: torch.jit.script(model)),
        ("torch.jit.trace", lambda: torch.jit.trace(model, tuple(inputs))),
    ):
        try:
            candidate = make()
            candidate(*inputs)
        except Exception:
            continue
        return candidate, how
    return None, ""


def save_fixed(model: nn.Module, engine: str, inputs: tuple[Any, ...], path: str, code: str) -> SavedFixed:
    """Write the fixed model to ``path``; returns what was written (format, how, how to load it) or the error."""
    target = Path(path)
    result = SavedFixed(str(target))
    with preserved_torch_state(), quantized_engine(engine), quiet(), torch.no_grad():
        scripted, how = _scripted(model, inputs)
        try:
            with atomic_path(target) as temporary:
                if scripted is not None:
                    torch.jit.save(scripted, str(temporary))
                    result.format, result.how = "torchscript", how
                    result.load = f'torch.backends.quantized.engine = "{engine}"; model = torch.jit.load("{target}")'
                else:
                    torch.save({"state_dict": model.state_dict(), "engine": engine, "rebuild_code": code}, temporary)
                    result.format = "state_dict"
                    result.how = "neither torch.jit.script nor torch.jit.trace worked on the fixed model"
                    result.load = (
                        f'checkpoint = torch.load("{target}"); run checkpoint["rebuild_code"] to build the model, '
                        'then quantized_model.load_state_dict(checkpoint["state_dict"])'
                    )
            result.saved = True
        except Exception as exc:
            result.error = exception_line(exc, 200)
    return result
