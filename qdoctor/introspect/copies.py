"""When checking a model needs a copy of it, and when running the model itself is safe.

qdoctor never changes the user's models. A copy is one more model in memory (a 1B-parameter model is 4.4 GB in
fp32), so a model is copied only when running it would change it: observers and fake-quant record what they see,
and a module in train mode updates its state (BatchNorm's running statistics), which lives in its buffers: a module
in train mode that has none (Linear, ReLU, Dropout: forward changes no parameter) runs as it is. Copying is not only
costly but can fail (a weight that is a tensor subclass without ``clone``). Hooks that qdoctor adds to run a model
are removed afterwards, and nothing is trained, so any other model runs as it is, under no_grad.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from torch import nn

from qdoctor import facts as F
from qdoctor.introspect.kinds import classify

ModelT = TypeVar("ModelT", bound=Any)


def changes_when_run(model: Any) -> bool:
    """Running ``model`` would change it (unknown objects count as changing)."""
    if not isinstance(model, nn.Module):
        return True
    return any(
        (m.training and any(b is not None for b in m._buffers.values())) or classify(m) in (F.OBSERVER, F.FAKE_QUANT)
        for m in model.modules()
    )


def runnable(model: ModelT) -> ModelT:
    """``model`` itself when running it changes nothing, else a copy to run (and drop) instead."""
    return copy.deepcopy(model) if changes_when_run(model) else model
