"""Numerics: SQNR of the subject's output against the float baseline's, on the same input."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from qdoctor.introspect.copies import runnable


def flat_tensors(value: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    if isinstance(value, torch.Tensor):
        out.append(value.dequantize() if value.is_quantized else value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            out.extend(flat_tensors(item))
    elif isinstance(value, dict):
        for item in value.values():
            out.extend(flat_tensors(item))
    return out


def sqnr_db(reference: Any, candidate: Any) -> float | None:
    """Signal-to-quantization-noise ratio in dB (torch.ao.ns.fx.utils.compute_sqnr), over all output tensors.

    +inf when identical; None when the outputs do not line up (different count or shape) or are not float.
    """
    from torch.ao.ns.fx.utils import compute_sqnr

    refs, cands = flat_tensors(reference), flat_tensors(candidate)
    if not refs or len(refs) != len(cands) or any(r.shape != c.shape for r, c in zip(refs, cands, strict=False)):
        return None
    if not all(r.is_floating_point() and c.is_floating_point() for r, c in zip(refs, cands, strict=False)):
        return None
    ref = torch.cat([r.detach().float().flatten() for r in refs])
    cand = torch.cat([c.detach().float().flatten() for c in cands])
    if torch.equal(ref, cand):
        return math.inf
    value = float(compute_sqnr(ref, cand))
    return value if math.isfinite(value) or value > 0 else None


def outputs(model: nn.Module, inputs: tuple[Any, ...]) -> Any:
    with torch.no_grad():
        return runnable(model)(*inputs)
