"""The state arguments a recurrent model's forward takes besides its input (``forward(input, hidden)``), made the way
the model itself makes them: its ``init_hidden(batch_size)`` method (the word-language-model convention). Used when
the script shows no call of the model and defines no example inputs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def init_hidden_candidates(model: nn.Module, tensor: torch.Tensor) -> list[tuple[tuple[Any, ...], str]]:
    """(arguments, how) with the model's own initial state, for the batch sizes ``tensor`` may have (seq-first or
    batch-first); empty when the model has no ``init_hidden``."""
    make = getattr(model, "init_hidden", None)
    if not callable(make) or tensor.dim() < 2:
        return []
    found: list[tuple[tuple[Any, ...], str]] = []
    for batch in dict.fromkeys((int(tensor.shape[1]), int(tensor.shape[0]))):
        try:
            with torch.no_grad():
                hidden = make(batch)
        except Exception:  # the model's own method refused this batch size: try the other one
            continue
        found.append(((tensor, hidden), f", with the state `{type(model).__name__}.init_hidden({batch})` makes"))
    return found
