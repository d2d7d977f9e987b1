"""TorchScript: a scripted or traced module (``torch.jit.script`` / ``trace``, a ``torch.jit.save`` archive) of a
model quantized by another flow. qdoctor reads its graph and packed weights; it cannot rebuild it (verified fixes
rebuild from the float baseline the eager way) and has no compare recipe for it."""

from __future__ import annotations

from qdoctor.facts import FlowKind
from qdoctor.flows import fallback_rebuild, register
from qdoctor.flows._base import Flow
from qdoctor.introspect.flow import ModelFlow


@register
class TorchScriptFlow(Flow):
    kind = FlowKind("torchscript", "TorchScript (torch.jit.script / trace / save)")
    priority = 10

    def matches(self, look: ModelFlow) -> bool:
        return look.script

    def rebuilt_by(self, look: ModelFlow) -> Flow | None:
        """Its models are rebuilt from the float baseline by the eager flows (or dynamic, for dynamic layers)."""
        return fallback_rebuild(look)
