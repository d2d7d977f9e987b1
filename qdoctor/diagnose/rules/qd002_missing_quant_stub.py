"""QD002 missing-quant-stub: float tensors reaching int8 modules, or int8 tensors reaching float ops or the output."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose import crash_causes as crashes
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import fix_engine, float_variable, subject_variable
from qdoctor.diagnose.registry import rule
from qdoctor.facts import CrashInfo, Facts, ModuleInfo
from qdoctor.facts.location import first_line

WRAP_FIX = """\
torch.backends.quantized.engine = "{engine}"  # the int8 engine for this CPU
{float} = torch.ao.quantization.QuantWrapper({float}).eval()  # QuantStub -> model -> DeQuantStub
{float}.qconfig = torch.ao.quantization.get_default_qconfig("{engine}")
prepared = torch.ao.quantization.prepare({float})
with torch.no_grad():
    for batch in calibration_batches:  # representative inputs (see QD001)
        prepared(*batch)
{subject} = torch.ao.quantization.convert(prepared)"""

STUB_QCONFIG_FIX = """\
# before prepare(): give the stub the qconfig of the layers it feeds, then prepare, calibrate and convert again
{float}.{stub}.qconfig = torch.ao.quantization.get_default_qconfig("{engine}")
# or set the qconfig on the root model ({float}.qconfig = ...) rather than on its children"""


def wrap_fix(facts: Facts) -> str:
    return WRAP_FIX.format(float=float_variable(facts), subject=subject_variable(facts), engine=fix_engine(facts))


def _crash_text(facts: Facts) -> str | None:
    crash = facts.crash
    return f"{crash.type}: {first_line(crash.message)[:200]}" if crash is not None and crash.message else None


def _unconverted_stubs(facts: Facts) -> list[ModuleInfo]:
    """QuantStub/DeQuantStub that convert() left in place of nnq.Quantize/DeQuantize: they had no qconfig."""
    if not facts.modules_of_kind(F.QUANTIZED):
        return []
    return [m for m in facts.modules_of_kind(F.QUANT_STUB, F.DEQUANT_STUB) if m.type in ("QuantStub", "DeQuantStub")]


@rule(
    "QD002",
    "missing-quant-stub",
    Severity.ERROR,
    "a float tensor reaches an int8 module, or an int8 tensor reaches a float op or the output (no Quant/DeQuantStub)",
    needs=("modules", "trace"),
    owns=(crashes.STUB_MISSING, crashes.INT8_TO_NUMPY, crashes.INT8_INDICES),
)
def missing_quant_stub(facts: Facts) -> Iterator[Finding]:
    found = list(_trace_findings(facts))
    yield from found
    run_crash = facts.trace.crash if facts.trace else None
    explained = any(f.evidence.get("crash") for f in found)
    for crash in crashes.distinct_crashes(facts):
        if crash is run_crash and explained:
            continue
        cause = crashes.classify(crash, facts)
        if cause is not None and missing_quant_stub.owns_cause(cause.cause):
            yield _crash_finding(facts, crash, cause)


def _crash_finding(facts: Facts, crash: CrashInfo, cause: crashes.KnownCrash) -> Finding:
    """A crash with this rule's cause that the trace does not place (the script raised it, or inside library code):
    explained from its message and traceback."""
    op = cause.op or "the op"
    sites = crashes.sites_text(crash, facts)
    if cause.cause == crashes.INT8_INDICES:
        message = (
            f"an nn.Embedding received quantized token ids ({crashes.short_message(crash, 120)}): a QuantStub sits "
            "before the embedding. Indices must stay integer (torch.long): put the QuantStub after the embedding "
            "lookup, and quantize the Embedding itself with float_qparams_weight_only_qconfig if you want it int8."
        )
        fix = (
            "# in forward(): embed the integer ids first, then quantize the embeddings\n"
            "x = self.embedding(input_ids)\nx = self.quant(x)\n"
            "# and, before prepare():\n"
            "# model.embedding.qconfig = torch.ao.quantization.float_qparams_weight_only_qconfig"
        )
    elif cause.cause == crashes.INT8_TO_NUMPY:
        message = (
            f"the script raised {crashes.short_message(crash)}: an int8 (quantized) tensor left the model and met "
            "numpy or a float-only API. There is no DeQuantStub before the output, so the model returns quint8 "
            "values."
        )
        fix = wrap_fix(facts) + "\n# or dequantize the output before using it: out = out.dequantize()"
    elif (backend := crashes.backend_error(crash.message)) is not None and backend.float_into_int8:
        message = (
            f"a float tensor reaches the int8 kernel {op} ({crashes.short_message(crash, 120)}): there is no "
            "QuantStub before the int8 layer, or its QuantStub was not converted."
        )
        fix = wrap_fix(facts)
    else:
        message = (
            f"an int8 tensor reaches {op}, a float op with no int8 kernel ({crashes.short_message(crash, 120)}): "
            "put a DeQuantStub before the float layer (and a QuantStub after it when int8 layers follow), or let "
            "the layer be quantized."
        )
        fix = (
            "# in __init__(): self.dequant_before = torch.ao.quantization.DeQuantStub()\n"
            "#                self.quant_after = torch.ao.quantization.QuantStub()\n"
            "x = self.dequant_before(x)\nx = self.float_layer(x)  # the layer that raised\nx = self.quant_after(x)"
        )
    if sites:
        message += " " + sites
    return missing_quant_stub.finding(
        message,
        module=crash.module,
        source=crashes.user_line(crash, facts) or crashes.crash_source(crash, facts),
        evidence={"crash": crashes.short_message(crash), "phase": crash.phase, **crashes.site_evidence(crash, facts)},
        fix=fix,
    )


def _trace_findings(facts: Facts) -> Iterator[Finding]:
    trace = facts.trace
    assert trace is not None
    crash = trace.crash
    reported: set[str] = set()
    idle_stubs = _unconverted_stubs(facts)
    idle_quant_stubs = [m for m in idle_stubs if m.type == "QuantStub"]
    for event in trace.events:
        if event.kind != "module":
            continue
        info = facts.module(event.module)
        if info is None:
            continue
        if info.kind == F.QUANTIZED and event.any_input_float and not event.any_input_quantized:
            crashed_here = crash is not None and crash.module == event.module
            reported.add(event.module)
            raises = ", so the model raises here" if crashed_here else ""
            if idle_quant_stubs:
                stub = idle_quant_stubs[0]
                message = (
                    f"`{event.module}` ({info.type}) is an int8 module but receives a float tensor{raises}: the "
                    f"QuantStub `{stub.path}` is still a no-op because convert() skipped it — it had no qconfig "
                    "(the qconfig was set on child modules, not on the stub or the root)."
                )
                fix = STUB_QCONFIG_FIX.format(float=float_variable(facts), stub=stub.path, engine=fix_engine(facts))
            else:
                message = (
                    f"`{event.module}` ({info.type}) is an int8 module but receives a float tensor: there is no "
                    f"QuantStub before it{raises}. Wrap the float model with QuantStub/DeQuantStub before prepare()."
                )
                fix = wrap_fix(facts)
            yield missing_quant_stub.finding(
                message,
                module=event.module,
                source=info.source,
                evidence={
                    "input_dtypes": [t.dtype for t in event.inputs],
                    "crash": _crash_text(facts) if crashed_here else None,
                    "unconverted_stubs": [m.path for m in idle_stubs],
                },
                fix=fix,
            )
            break  # the first entry point is the cause; later ones follow from it
    if crash is not None and crash.module and crash.module not in reported:
        info = facts.module(crash.module)
        backend = crashes.backend_error(crash.message)
        m_float = backend if backend is not None and backend.float_into_int8 else None
        m_int8 = backend if backend is not None and backend.int8_into_float else None
        last = trace.events[-1] if trace.events else None
        raised_in_module = last is not None and last.kind == "module" and last.module == crash.module
        # Function-level crashes (torch.add / + / cat on int8 tensors in forward()) belong to QD011.
        if info is not None and m_int8 and raised_in_module and info.kind not in (F.QUANTIZED,):
            yield missing_quant_stub.finding(
                f"`{crash.module}` ({info.type}) is a float op with no int8 kernel and receives an int8 tensor "
                f"({m_int8.op} has no QuantizedCPU kernel): put a DeQuantStub before it.",
                module=crash.module,
                source=info.source,
                evidence={"crash": _crash_text(facts)},
                fix=(
                    "# in __init__(): self.dequant_before = torch.ao.quantization.DeQuantStub()\n"
                    f"# in forward(): x = self.{crash.module}(self.dequant_before(x))\n"
                    "# and, if int8 layers follow it, a QuantStub after it: x = self.quant_after(x)"
                ),
            )
        elif info is not None and m_float and info.kind == F.QUANTIZED:
            yield missing_quant_stub.finding(
                f"`{crash.module}` ({info.type}) raised because it received a float tensor ({m_float.op}): "
                "there is no QuantStub before it.",
                module=crash.module,
                source=info.source,
                evidence={"crash": _crash_text(facts)},
                fix=wrap_fix(facts),
            )
    if crash is None and any(t.quantized for t in trace.output):
        last_int8 = next((e for e in reversed(trace.events) if e.kind == "module" and e.output_quantized), None)
        info = facts.module(last_int8.module) if last_int8 else None
        idle_dequant = [m.path for m in idle_stubs if m.type == "DeQuantStub"]
        why = (
            f"the DeQuantStub `{idle_dequant[0]}` is still a no-op (convert() skipped it: no qconfig)"
            if idle_dequant
            else "there is no DeQuantStub before the output"
        )
        yield missing_quant_stub.finding(
            f"the model returns an int8 (quantized) tensor: {why}, so callers get quint8 values instead of float "
            "scores.",
            module=last_int8.module if last_int8 else "",
            source=info.source if info else None,
            evidence={"output_dtypes": [t.dtype for t in trace.output], "unconverted_stubs": idle_dequant},
            fix=wrap_fix(facts),
        )
