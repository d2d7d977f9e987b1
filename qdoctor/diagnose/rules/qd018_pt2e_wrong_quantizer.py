"""QD018 pt2e-wrong-quantizer: a PT2E model quantized for another CPU family: an XNNPACK/ARM-style quantizer
(signed int8 activations) on x86, whose Inductor int8 lowering takes uint8 activations, or the x86 quantizer on ARM."""

from __future__ import annotations

import re
from collections.abc import Iterator

from qdoctor.diagnose import crash_causes as crashes
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.graph_patterns import activation_qparams
from qdoctor.diagnose.locate import script_line, subject_label
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts, SourceLocation
from qdoctor.facts.location import first_line

X86_FIX = """\
import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

quantizer = xiq.X86InductorQuantizer()
quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())  # uint8 activations
prepared = prepare_pt2e(torch.export.export(float_model.eval(), example_inputs).module(), quantizer)
# calibrate, convert_pt2e(prepared), then torch.compile with Inductor freezing on (QD012)"""
ARM_FIX = """\
import torchao.quantization.pt2e.quantizer.arm_inductor_quantizer as aiq
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

quantizer = aiq.ArmInductorQuantizer()
quantizer.set_global(aiq.get_default_arm_inductor_quantization_config())
prepared = prepare_pt2e(torch.export.export(float_model.eval(), example_inputs).module(), quantizer)"""
XNNPACK_FIX = """\
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
    XNNPACKQuantizer,
    get_symmetric_quantization_config,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
prepared = prepare_pt2e(torch.export.export(float_model.eval(), example_inputs).module(), quantizer)
# calibrate, convert_pt2e(prepared), then to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])"""
_ARM_STYLE = ("XNNPACK", "Arm", "ARM", "Ethos", "TOSA", "Vgf")


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _quantizer_line(facts: Facts, names: list[str]) -> SourceLocation | None:
    """The first line of code (comments skipped) that builds one of the quantizers."""
    return script_line(facts, "|".join(re.escape(name) + r"\(" for name in names)) if names else None


@rule(
    "QD018",
    "pt2e-wrong-quantizer",
    Severity.WARNING,
    "a PT2E model quantized for another CPU family (XNNPACK/ARM-style signed int8 activations on x86, or the x86 "
    "quantizer on ARM)",
    needs=("graph", "flow"),
    explains_slowdown=True,
)
def pt2e_wrong_quantizer(facts: Facts) -> Iterator[Finding]:
    flow = facts.flow
    assert flow is not None and facts.graph is not None
    if not flow.kind.exported_graph:
        return
    if facts.deploy is not None:  # --deploy: the backend is the deployment's, not this CPU's
        yield from _for_deployment(facts)
        return
    env = facts.environment
    names = [_short(q) for q in flow.quantizers]
    activations = activation_qparams(facts.graph)
    signed = [a for a in activations if a.startswith("torch.int8")]
    crash = facts.crash
    if env.is_x86:
        wrong = [n for n in names if any(style in n for style in _ARM_STYLE)]
        if not wrong and not (signed and not any("X86" in n for n in names)):
            return
        what = f"{', '.join(wrong)}" if wrong else "a quantizer with signed int8 activations"
        message = (
            f"`{subject_label(facts)}` was quantized with {what} (activations "
            f"{', '.join(activations) or 'signed int8'}), a recipe for ARM/mobile XNNPACK kernels, on an x86 CPU "
            f"({env.cpu_capability}). Inductor's x86 int8 lowering takes uint8 activations: patterns it does not "
            "match stay fp32 with quantize/dequantize around them"
        )
        fix = X86_FIX
    elif env.is_arm:
        wrong = [n for n in names if n == "X86InductorQuantizer"]
        if not wrong:
            return
        what = ", ".join(wrong)
        message = (
            f"`{subject_label(facts)}` was quantized with {what} (uint8 activations for x86 "
            "oneDNN kernels) on an ARM CPU; ArmInductorQuantizer makes the int8 recipe ARM's lowering expects"
        )
        fix = ARM_FIX
    else:
        return
    severity = None
    evidence = {"quantizers": flow.quantizers, "activation_qparams": activations, "cpu": env.cpu_capability}
    if crash is not None and crash.phase == "run" and crashes.quantized_op_on_cpu(crash):
        message += f", and here the model raises when run ({crash.type}: {first_line(crash.message)[:160]})"
        severity = Severity.ERROR
        evidence["crash"] = f"{crash.type}: {first_line(crash.message)[:200]}"
    yield pt2e_wrong_quantizer.finding(
        message + ".",
        module="",
        source=_quantizer_line(facts, wrong or names) or flow.source,
        evidence=evidence,
        fix=fix,
        severity=severity,
    )


def _for_deployment(facts: Facts) -> Iterator[Finding]:
    """The quantizer was made for another backend than the one the model is deployed to (--deploy)."""
    deploy, flow = facts.deploy, facts.flow
    assert deploy is not None and flow is not None
    if deploy.quantizer_made_for is None:
        return
    names = [_short(q) for q in flow.quantizers]
    activations = activation_qparams(facts.graph or [])
    yield pt2e_wrong_quantizer.finding(
        f"`{subject_label(facts)}` was quantized with {', '.join(names)}, made for {deploy.quantizer_made_for} "
        f"(activations {', '.join(activations) or 'unsigned int8'}), and is deployed to {deploy.backend} "
        f"({deploy.target}). {deploy.backend}'s int8 operators are matched on the signed, symmetric recipe its own "
        "quantizer makes: what it does not match stays in portable kernels or in float (see QD025/QD026), and the "
        "quantize/dequantize pairs of the other recipe run as they are.",
        module="",
        source=_quantizer_line(facts, names) or flow.source,
        evidence={"quantizers": flow.quantizers, "activation_qparams": activations, "deploy": deploy.target},
        fix=XNNPACK_FIX,
    )
