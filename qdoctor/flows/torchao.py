"""torchao's ``quantize_(model, config)``: weights replaced in place by torchao tensor subclasses (int8/int4 weight
only, dynamic activation). qdoctor detects it; it does not rebuild it (verified fixes rebuild from the float baseline
the eager way) and has no compare recipe for it."""

from __future__ import annotations

from qdoctor import facts as F
from qdoctor.facts import FlowKind
from qdoctor.flows import fallback_rebuild, register
from qdoctor.flows._base import CONVERTED, Flow
from qdoctor.introspect.flow import ModelFlow


@register
class TorchaoFlow(Flow):
    kind = FlowKind("torchao", "torchao quantize_ (tensor-subclass weights)")
    priority = 40

    def matches(self, look: ModelFlow) -> bool:
        return not look.script and look.graph is None and F.TORCHAO_QUANTIZED in look.module_kinds

    def stage(self, look: ModelFlow) -> str | None:
        return CONVERTED  # quantize_ converts in place: there is no prepared torchao model

    def rebuilt_by(self, look: ModelFlow) -> Flow | None:
        """Its models are rebuilt from the float baseline by the eager flows (or dynamic, for dynamic layers)."""
        return fallback_rebuild(look)
