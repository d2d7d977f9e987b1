"""QD002 missing-quant-stub: float tensors reaching int8 modules, or int8 tensors reaching float ops or the output."""

from __future__ import annotations

import re
from typing import Iterator

from qdoctor import facts as F
from qdoctor.facts import Facts
from qdoctor.registry import rule
from qdoctor.report import Finding, Severity

_FLOAT_INTO_INT8 = re.compile(r"Could not run '(quantized::[\w.]+)' with arguments from the 'CPU' backend")
_INT8_INTO_FLOAT = re.compile(r"Could not run '(aten::[\w.]+)' with arguments from the 'QuantizedCPU' backend")

WRAP_FIX = """\
class QuantWrapper(torch.nn.Module):  # or torch.ao.quantization.QuantWrapper(float_model)
    def __init__(self, model):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()      # float -> int8 at the input
        self.model = model
        self.dequant = torch.ao.quantization.DeQuantStub()  # int8 -> float at the output

    def forward(self, x):
        return self.dequant(self.model(self.quant(x)))

{float} = QuantWrapper({float}).eval()
{float}.qconfig = torch.ao.quantization.get_default_qconfig("{engine}")
prepared = torch.ao.quantization.prepare({float})
# ... run calibration batches through `prepared` ...
{subject} = torch.ao.quantization.convert(prepared)"""


def wrap_fix(facts: Facts) -> str:
    engine = facts.environment.quantized_engine
    float_name = (facts.target.float_name or "float_model").removesuffix("()")
    return WRAP_FIX.format(float=float_name, subject=facts.target.subject_name.removesuffix("()"), engine=engine)


@rule(
    "QD002",
    "missing-quant-stub",
    Severity.ERROR,
    "a float tensor reaches an int8 module, or an int8 tensor reaches a float op or the output (no Quant/DeQuantStub)",
    needs=("modules", "trace"),
)
def missing_quant_stub(facts: Facts) -> Iterator[Finding]:
    trace = facts.trace
    assert trace is not None
    crash = trace.crash
    reported: set[str] = set()
    for event in trace.events:
        if event.kind != "module":
            continue
        info = facts.module(event.module)
        if info is None:
            continue
        if info.kind == F.QUANTIZED and event.any_input_float and not event.any_input_quantized:
            crashed_here = crash is not None and crash.module == event.module
            reported.add(event.module)
            yield missing_quant_stub.finding(
                f"`{event.module}` ({info.type}) is an int8 module but receives a float tensor: there is no "
                "QuantStub before it"
                + (", so the model raises here" if crashed_here else "")
                + ". Wrap the float model with QuantStub/DeQuantStub before prepare().",
                module=event.module,
                source=info.source,
                evidence={
                    "input_dtypes": [t.dtype for t in event.inputs],
                    "crash": f"{crash.type}: {crash.message.splitlines()[0][:200]}" if crashed_here and crash else None,
                },
                fix=wrap_fix(facts),
            )
            break  # the first entry point is the cause; later ones follow from it
    if crash is not None and crash.module and crash.module not in reported:
        info = facts.module(crash.module)
        m_float = _FLOAT_INTO_INT8.search(crash.message)
        m_int8 = _INT8_INTO_FLOAT.search(crash.message)
        last = trace.events[-1] if trace.events else None
        raised_in_module = last is not None and last.kind == "module" and last.module == crash.module
        if info is not None and m_int8 and raised_in_module and info.kind not in (F.QUANTIZED,):
            yield missing_quant_stub.finding(
                f"`{crash.module}` ({info.type}) is a float op with no int8 kernel and receives an int8 tensor "
                f"({m_int8.group(1)} has no QuantizedCPU kernel): put a DeQuantStub before it.",
                module=crash.module,
                source=info.source,
                evidence={"crash": f"{crash.type}: {crash.message.splitlines()[0][:200]}"},
                fix=f"# in forward(): x = self.dequant(x) before calling self.{crash.module}\n" + wrap_fix(facts),
            )
        elif info is not None and m_float and info.kind == F.QUANTIZED and crash.module not in reported:
            yield missing_quant_stub.finding(
                f"`{crash.module}` ({info.type}) raised because it received a float tensor ({m_float.group(1)}): "
                "there is no QuantStub before it.",
                module=crash.module,
                source=info.source,
                evidence={"crash": f"{crash.type}: {crash.message.splitlines()[0][:200]}"},
                fix=wrap_fix(facts),
            )
    if crash is None and any(t.quantized for t in trace.output):
        last_int8 = next(
            (e for e in reversed(trace.events) if e.kind == "module" and e.output_quantized), None
        )
        info = facts.module(last_int8.module) if last_int8 else None
        yield missing_quant_stub.finding(
            "the model returns an int8 (quantized) tensor: there is no DeQuantStub before the output, so callers "
            "get quint8 values instead of float scores.",
            module=last_int8.module if last_int8 else "",
            source=info.source if info else None,
            evidence={"output_dtypes": [t.dtype for t in trace.output]},
            fix=wrap_fix(facts),
        )
