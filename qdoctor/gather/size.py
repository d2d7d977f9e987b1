"""Serialized size of a model: the bytes torch.save writes for its state_dict."""

from __future__ import annotations

import io

import torch
from torch import nn


def serialized_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()
