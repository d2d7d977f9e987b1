"""A quantization flow's identity as Facts carry it: its name, its title and the traits rules ask about.

Torch-free, so that diagnose/ can read it. The instances are declared by the flows themselves (one module per flow
in qdoctor/flows/, each with its ``kind``); gathering puts the subject's kind in ``FlowInfo.kind``. A rule never
compares a flow's name: it asks a trait (``facts.flow.kind.exported_graph``) or uses the flow's own snippet.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlowKind:
    name: str  # the JSON report's flow.flow: "eager", "dynamic", "fx", "pt2e", "torchao", "torchscript", "none"
    title: str  # in words, for reports: "FX graph mode (prepare_fx / convert_fx)"
    # an aten graph captured by torch.export and annotated by a Quantizer (PT2E): what runs is decided by the
    # backend compiler that lowers it (torch.compile with Inductor), and the quantizer chooses the dtypes
    exported_graph: bool = False
    # how a model of this flow is prepared, and prepared for QAT, in words ("FX prepare_fx"); "" when it is not
    prepare_step: str = ""
    prepare_qat_step: str = ""
    # code that converts a prepared (or QAT-trained) model of this flow, with "{model}" for its variable; "" when
    # the flow has no convert step
    convert_code: str = ""
    convert_qat_code: str = ""
    # code that keeps layers in float in this flow, with "{names}" for the quoted, comma-separated layer names; ""
    # when the rule's own eager/FX wording applies
    keep_float_code: str = ""

    def __str__(self) -> str:
        return self.name


# The subject went through no quantization flow (a float model, or the flow failed before producing one).
NO_FLOW = FlowKind("none", "not quantized")
