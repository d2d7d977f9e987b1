"""QD015 quantized-on-cuda: an eager/FX int8 model (torch.ao.quantization) run on a GPU; its kernels are CPU-only."""

from __future__ import annotations

import re
from collections.abc import Iterator

from qdoctor.diagnose import crash_causes as crashes
from qdoctor.diagnose import static_steps as static
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import script_line, subject_variable
from qdoctor.diagnose.registry import from_text, rule
from qdoctor.facts import Facts, SourceLocation
from qdoctor.facts import report as R

_MOVES_TO_CUDA = re.compile(r"\.cuda\(|\.to\(\s*['\"]cuda|device\s*=\s*['\"]cuda|torch\.device\(\s*['\"]cuda")

FIX = """\
# torch.ao.quantization int8 models (eager and FX) run on the CPU only: their kernels are
# x86/fbgemm, onednn and qnnpack. Keep the quantized model and its inputs on the CPU:
device = torch.device("cpu")
{subject} = {subject}.to(device)
inputs = inputs.to(device)
# For int8 on a GPU, start again from the float model with a GPU stack
# (torchao's quantize_ configs, TensorRT)."""


@rule(
    "QD015",
    "quantized-on-cuda",
    Severity.ERROR,
    "an eager/FX int8 model run on CUDA: torch.ao.quantization's int8 kernels are CPU-only",
    needs=("modules",),
    owns=(crashes.INT8_ON_CUDA,),
)
def quantized_on_cuda(facts: Facts) -> Iterator[Finding]:
    reported = False
    for crash in crashes.distinct_crashes(facts):
        cause = crashes.classify(crash, facts)
        if cause is None or not quantized_on_cuda.owns_cause(cause.cause):
            continue
        # where it raised; else the line that sends the model or its inputs to the GPU
        source = crashes.crash_source(crash, facts) or script_line(facts, _MOVES_TO_CUDA)
        cuda_line = script_line(facts, _MOVES_TO_CUDA)
        op = f" ({cause.op})" if cause.op else ""
        yield quantized_on_cuda.finding(
            f"the int8 model is run on CUDA{op} and raises {crashes.short_message(crash, 160)}. Eager and FX "
            "quantized models (torch.ao.quantization) have CPU kernels only: run them on the CPU.",
            module=crash.module if crash.module is not None else "",  # the whole model when the script raised
            source=source,
            evidence={
                "crash": crashes.short_message(crash),
                "phase": crash.phase,
                "operator": cause.op,
                "cuda_line": f"{cuda_line.line}: {cuda_line.code}" if cuda_line else None,
            },
            fix=FIX.format(subject=subject_variable(facts)),
        )
        reported = True
    moved = [s for s in facts.target.substitutions if s.kind == "cuda"]
    if not reported and moved and crashes.has_int8_modules(facts):
        # No GPU here: the CUDA stand-in ran the script on the CPU, but on the reporter's GPU machine it fails.
        cuda_line = script_line(facts, _MOVES_TO_CUDA)
        first = moved[0]  # where the script first sent something to CUDA (the stand-in kept it on the CPU)
        lines = facts.target.script_text.splitlines()
        code = lines[first.line - 1].strip() if first.line and 0 < first.line <= len(lines) else ""
        source = SourceLocation(first.file, first.line, code) if first.file and first.line else cuda_line
        yield quantized_on_cuda.finding(
            f"the script sends the int8 model or its inputs to CUDA ({first.requested}). Eager and FX quantized "
            'models (torch.ao.quantization) have CPU kernels only: on a GPU machine running them raises ("Could not '
            "run 'quantized::...' with arguments from the 'QuantizedCUDA' backend\"). This machine has no GPU: "
            "qdoctor ran the script on the CPU (an offline stand-in).",
            module="",
            source=source,
            evidence={
                "crash": None,
                "phase": "load",
                "operator": None,
                "cuda_line": f"{cuda_line.line}: {cuda_line.code}" if cuda_line else None,
                "stand_in": f"{first.requested} -> {first.instead}",
            },
            fix=FIX.format(subject=subject_variable(facts)),
        )


@from_text("QD015")
def int8_sent_to_cuda(facts: Facts) -> Iterator[Finding]:
    """The report's text sends a model it quantized (convert, quantize_dynamic) to a GPU."""
    for step in static.steps(facts, R.TO_CUDA):
        quantized = [
            q
            for q in static.before(facts, step, R.CONVERT, R.DYNAMIC)
            if step.model in static.names_of(q) and q.detail != "convert_pt2e"
        ]
        if not quantized or not static.unverified(step, facts):
            continue
        yield quantized_on_cuda.finding(
            f"`{step.code}` (line {step.line}) sends the model quantized at line {quantized[-1].line} to a GPU: "
            "torch.ao.quantization's int8 kernels run on the CPU only (static: read, not run).",
            source=static.where(step, facts),
            evidence=static.evidence(step, quantized_at=quantized[-1].line),
            fix=f"{step.model} = {step.model}.to('cpu')  # int8 eager/FX models run on the CPU",
            severity=Severity.WARNING,
        )
