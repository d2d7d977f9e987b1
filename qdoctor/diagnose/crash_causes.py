"""The crash doctor: which known quantization failure explains a crash (int8 and float meeting, a missing engine,
int8 kernels run on CUDA). Pure functions over Facts.

A quantized model that raises is the most common report. ``classify`` is the one ordered table of the failures
qdoctor knows; each cause it names is a declared ``Cause`` that the rule reporting it claims with
``@rule(..., owns=...)``. QD014 unexplained-crash reports every crash that no registered rule owns: a crash is never
hidden. Quantization-flow failures (export, prepare_pt2e, moved imports) are qdoctor.diagnose.flow_causes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from qdoctor import facts as F
from qdoctor.diagnose.cause import Cause
from qdoctor.facts import CrashInfo, Facts, SourceLocation, TraceEvent
from qdoctor.facts.location import first_line

# Where a crash was raised, as far as the execution trace tells.
FUNCTION = "function"  # by a torch function called in a forward() (torch.add, +, torch.cat, x.exp())
MODULE = "module"  # inside a leaf module
SCRIPT = "script"  # no trace event: the script raised it, or qdoctor's own run did not reach it


def _classified_as(cause_id: str) -> Callable[[CrashInfo, Facts], bool]:
    def matches(crash: CrashInfo, facts: Facts) -> bool:
        known = classify(crash, facts)
        return known is not None and known.cause.id == cause_id

    return matches


def _cause(cause_id: str) -> Cause:
    """A cause that ``classify`` names: the first entry of its ordered table that matches a crash decides."""
    return Cause(cause_id, _classified_as(cause_id))


INT8_ON_CUDA = _cause("int8-on-cuda")  # torch.ao.quantization's CPU-only int8 kernels run on a GPU
NO_QUANTIZED_ENGINE = _cause("no-quantized-engine")
STUB_MISSING = _cause("stub-missing")  # an int8/float backend error raised inside a leaf module
# Raised by a torch function called in forward() (torch.add, +, torch.cat, x.exp()):
INT8_AND_FLOAT_IN_FUNCTION = _cause("int8-and-float-in-function")
FLOAT_INTO_INT8_FUNCTION = _cause("float-into-int8-function")  # a converted FloatFunctional given a float tensor
INT8_INTO_ATEN_FUNCTION = _cause("int8-into-aten-function")  # an op with no int8 kernel given an int8 tensor
# Dtypes that do not meet inside a module or the script: int8 and float, quint8 and qint8.
INT8_AND_FLOAT_MIXED = _cause("int8-and-float-mixed")
INT8_INTO_FLOAT_MODULE = _cause("int8-into-float-module")
ACTIVATION_DTYPE = _cause("activation-dtype")
WEIGHT_DTYPE = _cause("weight-dtype")

_BACKEND = re.compile(r"Could not run '(?P<op>[\w:.]+)' with arguments from the '(?P<backend>\w+)' backend")
_CUDA = re.compile(
    r"NVIDIA driver|not compiled with CUDA|no CUDA GPUs|CUDA error|CUDA driver|cuda:\d|'(?:Quantized)?CUDA' backend",
    re.I,
)
# What QD003 backend-mismatch recognizes (it reads Facts.crash: the run's crash, else the script's).
_ENGINE = re.compile(r"Didn't find engine for operation quantized::\w+|quantized engine \w+ is not supported|NoQEngine")
# int8 and float (or quint8 and qint8) meeting where one dtype is required; (pattern, cause).
_DTYPE = (
    (
        re.compile(
            r"Input type \(c10::(?P<got>q\w+)\) and (?:bias|weight) type \((?P<want>[\w:]+)\) should be the same"
        ),
        INT8_INTO_FLOAT_MODULE,
    ),
    (
        re.compile(r"mat1 and mat2 must have the same dtype, but got (?P<got>Q\w+) and (?P<want>\w+)"),
        INT8_INTO_FLOAT_MODULE,
    ),
    (re.compile(r"Expected input data type (?P<want>\w+) but got (?P<got>\w+)"), ACTIVATION_DTYPE),
    (re.compile(r"data type of input should be (?P<want>\w+)"), ACTIVATION_DTYPE),
    (re.compile(r"Weight observer must have a dtype of (?P<want>\w+), got (?P<got>[\w.]+)"), WEIGHT_DTYPE),
)
_MIXED = re.compile(
    r"promoteTypes with quantized numbers|not supported on quantized tensors|"
    r"Could not run 'aten::qscheme' with arguments from the 'CPU' backend"
)


@dataclass(frozen=True)
class KnownCrash:
    """A crash that ``classify`` explains: its cause, where it was raised and what the message tells."""

    cause: Cause
    level: str  # FUNCTION, MODULE or SCRIPT
    op: str | None = None  # the operator the message names
    got: str | None = None  # dtype the op received, when the message says
    want: str | None = None  # dtype it needed


def short_message(crash: CrashInfo, limit: int = 240) -> str:
    """`Type: first line`, cut before torch's long list of dispatch keys."""
    text = first_line(crash.message).split(" This could be because the operator")[0]
    return f"{crash.type}: {text[:limit]}"


def same_crash(a: CrashInfo, b: CrashInfo) -> bool:
    return a.type == b.type and first_line(a.message) == first_line(b.message)


def distinct_crashes(facts: Facts) -> list[CrashInfo]:
    """The crash of qdoctor's run of the subject, then the script's own crash when it is a different one, then every
    other statement of the script that raised (keep-going: one per line and error; not the NameErrors that only
    follow from an earlier one)."""
    found: list[CrashInfo] = []
    if facts.trace is not None and facts.trace.crash is not None:
        found.append(facts.trace.crash)
    load = facts.target.load_crash
    if load is not None and not any(same_crash(load, c) for c in found):
        found.append(load)
    for error in facts.target.script_errors:
        if error.follows_from is not None:  # a name an earlier error left unbound: that error is the finding
            continue
        if error is load or any(same_crash(error, c) for c in found):  # the same error on several lines: once
            continue
        found.append(error)
    return found


def raising_event(facts: Facts, crash: CrashInfo) -> TraceEvent | None:
    """The trace event that was running when the subject raised: the last one, if it never returned."""
    if crash.phase != "run" or facts.trace is None or not facts.trace.events:
        return None
    last = facts.trace.events[-1]
    return last if not last.outputs else None


def has_int8_modules(facts: Facts) -> bool:
    return bool(facts.modules_of_kind(F.QUANTIZED, F.DYNAMIC_QUANTIZED))


def classify(crash: CrashInfo, facts: Facts) -> KnownCrash | None:
    """The known cause of ``crash``, or None when qdoctor cannot explain it. Ordered: the first entry that matches."""
    message = crash.message
    event = raising_event(facts, crash)
    level = SCRIPT if event is None else FUNCTION if event.kind == "function" else MODULE
    backend = _BACKEND.search(message)
    op = backend.group("op") if backend else None

    if _CUDA.search(message) and has_int8_modules(facts):
        return KnownCrash(INT8_ON_CUDA, level, op)
    if _ENGINE.search(message) and crash is facts.crash:
        return KnownCrash(NO_QUANTIZED_ENGINE, level, op)
    if _MIXED.search(message):
        if level == FUNCTION:
            return KnownCrash(INT8_AND_FLOAT_IN_FUNCTION, level, event.name if event else op)
        return KnownCrash(INT8_AND_FLOAT_MIXED, level, op)
    for pattern, cause in _DTYPE:
        match = pattern.search(message)
        if match:
            groups = match.groupdict()
            return KnownCrash(cause, level, op, got=groups.get("got"), want=groups.get("want"))
    if backend and backend.group("backend") in ("CPU", "QuantizedCPU"):
        if level == FUNCTION:
            kind = FLOAT_INTO_INT8_FUNCTION if backend.group("backend") == "CPU" else INT8_INTO_ATEN_FUNCTION
            return KnownCrash(kind, level, op)
        if level == MODULE:
            return KnownCrash(STUB_MISSING, level, op)
    return None


def crash_source(crash: CrashInfo, facts: Facts) -> SourceLocation | None:
    """The user's line for a crash: the first frame in their file from the raise point, else where the module that
    raised was created."""
    if crash.file and crash.line:
        return SourceLocation(crash.file, crash.line, crash.code or "")
    info = facts.module(crash.module) if crash.module is not None else None
    return info.source if info is not None else None
