"""QD006: convert the prepared (or QAT-trained) model to int8; for QAT, with observers disabled first."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qdoctor.diagnose.findings import Finding
from qdoctor.prescribe.fixes import CannotApply, Fix, FixContext, transform


def convert_subject(model: nn.Module, batches: Any) -> nn.Module:
    from torch.ao import quantization as tq

    from qdoctor.introspect.kinds import classify

    model.eval()
    if any(classify(m) == "fake_quant" for m in model.modules()):
        model.apply(tq.disable_observer)  # QAT: freeze the learned ranges before convert
    if isinstance(model, torch.fx.GraphModule):
        from torch.ao.quantization.quantize_fx import convert_fx

        return convert_fx(model)
    return tq.convert(model)


def convert_exported(model: nn.Module, batches: Any) -> nn.Module:
    """A PT2E model (prepare_pt2e / prepare_qat_pt2e on a torch.export graph) converts with convert_pt2e: convert_fx
    and .eval() do not apply to an exported graph."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    converted = convert_pt2e(model)
    move_exported_model_to_eval(converted)
    return converted


_CONVERT_EXPORTED = (
    "from torchao.quantization.pt2e import move_exported_model_to_eval\n"
    "from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e\n"
    "{subject} = convert_pt2e({subject})\nmove_exported_model_to_eval({subject})"
)


@transform("QD006", "convert to int8")
def convert(ctx: FixContext, finding: Finding) -> Fix | CannotApply:
    if ctx.flow is not None and not ctx.flow.static:
        return CannotApply("dynamic quantization has no convert step")
    is_fx = any(m.path == "" and m.type == "GraphModule" for m in ctx.facts.modules or [])
    is_qat = bool(ctx.facts.modules_of_kind("fake_quant", "qat"))
    # the flow that made the subject, not the one that rebuilds it (PT2E models are rebuilt the FX way)
    if ctx.facts.flow is not None and ctx.facts.flow.kind.exported_graph:
        return Fix(
            as_written={"convert": False},
            fixed={"convert": True},
            on_subject=convert_exported,
            subject_code=_CONVERT_EXPORTED,
            prefer_subject=True,
        )
    if is_fx:
        code = "from torch.ao.quantization.quantize_fx import convert_fx\n{subject} = convert_fx({subject}.eval())"
    elif is_qat:
        code = (
            "{subject}.eval()\n{subject}.apply(torch.ao.quantization.disable_observer)\n"
            "{subject} = torch.ao.quantization.convert({subject})"
        )
    else:
        code = "{subject} = torch.ao.quantization.convert({subject}.eval())"
    return Fix(
        as_written={"convert": False},
        fixed={"convert": True},
        on_subject=convert_subject,
        subject_code=code,
        prefer_subject=True,  # convert the user's own calibrated observers
    )
