"""The tracebacks and error messages pasted into a bug report (facts.target.report_crashes), explained through the
crash table (qdoctor.diagnose.crash_causes) and the flow-failure table (qdoctor.diagnose.flow_causes) as if qdoctor
had seen them, and reported under the rule that owns their cause: "from the report's traceback, not reproduced".
Pure functions over Facts; called by qdoctor.diagnose.registry.run_from_text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from qdoctor.diagnose import crash_causes as crashes
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.flow_causes import diagnose as flow_diagnose
from qdoctor.facts import NO_FLOW, CrashInfo, Facts, FlowInfo, SourceLocation

# What each cause of the crash table means, said once for a quoted crash (the rules say it with their model facts).
_MEANING = {
    crashes.INT8_ON_CUDA.id: (
        "torch.ao.quantization's int8 kernels run on the CPU only: the quantized model (or its input) was sent to a "
        "GPU",
        "quantized_model.to('cpu')  # and its inputs: eager/FX int8 models run on the CPU",
    ),
    crashes.NO_QUANTIZED_ENGINE.id: (
        "the quantized engine the model needs is not available on this build or CPU (qnnpack/x86/onednn)",
        "torch.backends.quantized.engine = 'x86'  # on x86 CPUs; 'qnnpack' on ARM",
    ),
    crashes.STUB_MISSING.id: (
        "an int8 layer got a float tensor, or a float layer got an int8 tensor: a QuantStub (or DeQuantStub) is "
        "missing where float and int8 meet",
        "self.quant = torch.ao.quantization.QuantStub()    # forward: x = self.quant(x) before the int8 layers\n"
        "self.dequant = torch.ao.quantization.DeQuantStub()  # and x = self.dequant(x) before float code",
    ),
    crashes.INT8_AND_FLOAT_IN_FUNCTION.id: (
        "a tensor function in forward() got an int8 and a float tensor together",
        "self.ff = torch.ao.nn.quantized.FloatFunctional()  # forward: self.ff.add(a, b) / self.ff.cat([a, b])",
    ),
    crashes.FLOAT_INTO_INT8_FUNCTION.id: (
        "an int8 function (a converted FloatFunctional) got a float tensor",
        "x = self.quant(x)  # quantize before the converted add/cat",
    ),
    crashes.INT8_INTO_ATEN_FUNCTION.id: (
        "an operator with no int8 kernel (`+`, `*`, `@`, torch.cat, ...) got an int8 tensor in forward(): eager "
        "mode quantizes modules, not the tensor operations between them",
        "self.ff = torch.ao.nn.quantized.FloatFunctional()  # forward: self.ff.add(a, b), self.ff.mul_scalar(x, 2)\n"
        "# or dequantize around the op: x = self.dequant(x); x = x @ w; x = self.quant2(x)",
    ),
    crashes.INT8_AND_FLOAT_MIXED.id: (
        "int8 and float tensors met where one dtype is required",
        "# add a QuantStub/DeQuantStub where float and int8 meet",
    ),
    crashes.INT8_INTO_FLOAT_MODULE.id: (
        "a float layer (kept float, or not converted) got the int8 output of the layer before it",
        "self.dequant = torch.ao.quantization.DeQuantStub()  # before the float layer",
    ),
    crashes.ACTIVATION_DTYPE.id: (
        "the kernels got activations of a dtype they do not take (x86/fbgemm int8 kernels take quint8)",
        "qconfig = torch.ao.quantization.get_default_qconfig('x86')",
    ),
    crashes.WEIGHT_DTYPE.id: (
        "the weight observer's dtype is not the one the kernels take (qint8 weights)",
        "qconfig = torch.ao.quantization.get_default_qconfig('x86')",
    ),
    crashes.INT8_TO_NUMPY.id: (
        "an int8 tensor left the model (no DeQuantStub at its end) and met numpy or a float API",
        "x = self.dequant(x)  # at the end of forward()",
    ),
    crashes.INT8_INDICES.id: (
        "a QuantStub quantized the token ids an Embedding takes",
        "# do not quantize the ids: put the QuantStub after the Embedding",
    ),
    crashes.DROPOUT_IN_TRAIN_MODE.id: (
        "a Dropout left in train mode got an int8 tensor",
        "model.eval()  # before convert and inference",
    ),
}


def _explained(crash: CrashInfo, facts: Facts) -> tuple[str, str]:
    """What the quoted crash means and its fix, from the table that knows it; ("", "") when none does."""
    mode = crashes.mode_error(crash) or crashes.qconfig_error(crash)
    if mode is not None:
        return mode[0], mode[1].replace("{model}", "model").replace("{module}", "layer").replace("{{", "{")
    flow = flow_diagnose(crash, facts.environment.torch_version, facts.flow.torchao_version if facts.flow else None)
    if flow is not None and flow.cause != "unrecognized":
        return flow.explanation, flow.fix
    known = crashes.classify(crash, facts)
    if known is not None:
        return _MEANING.get(known.cause.id, ("", ""))
    return "", ""


def traceback_findings(
    facts: Facts, rules_all: Sequence[Any], owners: Callable[[CrashInfo, Facts], list[Any]]
) -> Iterator[Finding]:
    """One finding per error the report quotes whose cause a rule owns, under that rule (the residual crash rule for
    a traceback no rule explains). Warnings: qdoctor did not see these crashes. ``rules_all`` and ``owners`` are the
    registry's (it calls this: handed in, so that this module does not import it back)."""
    for crash in facts.target.report_crashes:
        view = replace(
            facts,
            trace=None,
            flow=facts.flow or FlowInfo(kind=NO_FLOW),
            target=replace(facts.target, load_crash=crash, script_errors=[], report_crashes=[]),
        )
        rules = owners(crash, view)
        explanation, fix = _explained(crash, view)
        source = (
            SourceLocation(crash.file, crash.line, crashes.short_message(crash, 160))
            if crash.file and crash.line
            else None
        )
        quoted = crashes.short_message(crash).rstrip(". ")
        if not rules:
            residual = next((r for r in rules_all if r.residual), None)  # the rule of crashes no rule owns
            if residual is None or not crashes.traceback_frames(crash):
                continue  # an error named in prose, no traceback: not evidence of a crash
            rules = [residual]
            explanation = "not a known quantization failure; its frames are in the report"
        for owner in rules[:1]:
            yield owner.finding(
                f"the report quotes {quoted} (from the report's traceback, not reproduced): {explanation.rstrip('.')}.",
                source=source,
                evidence={"error": quoted, "report_line": crash.line},
                fix=fix,
                severity=Severity.WARNING,
            )
