"""QD016 quantized-dtype-mismatch: int8 meets float, or quint8 meets qint8, where one dtype is required."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor.diagnose import crash_causes as crashes
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import script_attribute, step_argument
from qdoctor.diagnose.registry import rule
from qdoctor.facts import CrashInfo, Facts

ACTIVATION_FIX = """\
# x86 / fbgemm / onednn / qnnpack int8 kernels take quint8 activations and qint8 weights:
from torch.ao.quantization import HistogramObserver, PerChannelMinMaxObserver, QConfig

qconfig = QConfig(
    activation=HistogramObserver.with_args(dtype=torch.quint8, reduce_range=True),
    weight=PerChannelMinMaxObserver.with_args(
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric
    ),
)  # or simply: torch.ao.quantization.get_default_qconfig("{engine}")
# and when quantizing by hand: torch.quantize_per_tensor(x, scale, zero_point, torch.quint8)"""

WEIGHT_FIX = """\
# weights must be qint8 (activations quint8): use the backend's default qconfig
model.qconfig = torch.ao.quantization.get_default_qconfig("{engine}")"""


def _producer(facts: Facts, dtype: str) -> str | None:
    """The stub or quantize call that made the first tensor of ``dtype`` in the trace."""
    for event in facts.trace.events if facts.trace else []:
        if any(t.dtype == dtype for t in event.outputs) and not any(t.dtype == dtype for t in event.inputs):
            return event.module if event.kind == "module" else event.name
    return None


@rule(
    "QD016",
    "quantized-dtype-mismatch",
    Severity.ERROR,
    "an int8 tensor reaches a float-weighted module, or qint8 activations reach quint8 kernels (dtype errors)",
    needs=("modules",),
    owns=(
        crashes.INT8_INTO_FLOAT_MODULE,
        crashes.ACTIVATION_DTYPE,
        crashes.WEIGHT_DTYPE,
        crashes.INT8_AND_FLOAT_MIXED,
        crashes.UNSUPPORTED_QCONFIG,
    ),
)
def quantized_dtype_mismatch(facts: Facts) -> Iterator[Finding]:
    engine = facts.environment.quantized_engine
    for crash in crashes.distinct_crashes(facts):
        refused = crashes.qconfig_error(crash)
        if refused is not None:
            yield _qconfig_finding(facts, crash, *refused)
            continue
        cause = crashes.classify(crash, facts)
        if cause is None or not quantized_dtype_mismatch.owns_cause(cause.cause):
            continue
        yield _finding(facts, crash, cause, engine)


def _finding(facts: Facts, crash: CrashInfo, cause: crashes.KnownCrash, engine: str) -> Finding:
    info = facts.module(crash.module) if crash.module else None
    name = f"`{crash.module}` ({info.type})" if info else "the model"
    event = crashes.raising_event(facts, crash)
    evidence: dict = {"crash": crashes.short_message(crash), "phase": crash.phase}
    if event is not None:
        evidence["input_dtypes"] = [t.dtype for t in event.inputs]
    if cause.cause == crashes.INT8_INTO_FLOAT_MODULE:
        evidence["module_kind"] = info.kind if info else None
        message = (
            f"{name} is a float module (it was not quantized: qconfig None, or a type convert does not map) but "
            f'receives an int8 ({cause.got}) tensor, so it raises "{crashes.first_line(crash.message)[:120]}". '
            "Dequantize before it, or let it be quantized."
        )
        path = crash.module or "layer"
        fix = (
            "# either dequantize before the float layer and quantize after it:\n"
            f"#   in __init__: self.dequant_{path.replace('.', '_')} = torch.ao.quantization.DeQuantStub()\n"
            f"x = self.dequant_{path.replace('.', '_')}(x)\n"
            f"x = self.{path}(x)\n"
            "# or quantize it with the rest: drop the `qconfig = None` you set on it,\n"
            "# then prepare, calibrate and convert again"
        )
    elif cause.cause == crashes.ACTIVATION_DTYPE:
        producer = _producer(facts, "torch.qint8")
        evidence["qint8_made_by"] = producer
        message = (
            f"{name} is an int8 kernel that needs {cause.want} (unsigned) activations but receives "
            f"{cause.got or 'qint8'} (signed)"
            + (f", made by `{producer}`" if producer else "")
            + ": the activation dtype in the qconfig (or in a hand-written quantize_per_tensor) is qint8."
        )
        fix = ACTIVATION_FIX.format(engine=engine)
    elif cause.cause == crashes.WEIGHT_DTYPE:
        message = (
            f"the qconfig's weight observer uses {cause.got}, but int8 weights must be {cause.want}: "
            f'"{crashes.first_line(crash.message)[:120]}".'
        )
        fix = WEIGHT_FIX.format(engine=engine)
    else:  # int8-and-float-mixed inside a module
        message = (
            f"{name} combines an int8 and a float tensor in one op and raises "
            f'"{crashes.first_line(crash.message)[:120]}": dequantize the int8 one (or quantize the float one) first.'
        )
        fix = "x = x.dequantize() if x.is_quantized else x  # inside the module's forward, before mixing with float"
    return quantized_dtype_mismatch.finding(
        message,
        module=crash.module,
        source=crashes.crash_source(crash, facts),
        evidence=evidence,
        fix=fix,
    )


def _qconfig_finding(facts: Facts, crash: CrashInfo, explanation: str, fix: str) -> Finding:
    """prepare/convert/quantize_dynamic refused a qconfig the module cannot take."""
    source = crashes.user_line(crash, facts) or crashes.crash_source(crash, facts)
    kind = crashes.qconfig_module_type(crash)
    module = next((m.path for m in facts.modules or [] if kind and kind in m.type and m.path), None)
    if module is None and facts.modules is None and kind:  # the step raised before any model facts existed
        module = script_attribute(facts, kind)
    model = step_argument(facts, source)  # the model prepare() took: the fix goes on it, before prepare()
    return quantized_dtype_mismatch.finding(
        f"the script raised {crashes.short_message(crash, 160)}: {explanation}.",
        module=module,
        source=source,
        evidence={"crash": crashes.short_message(crash), "phase": crash.phase},
        fix=fix.format(model=model, module=module or "layer"),
    )
