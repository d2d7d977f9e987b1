"""The crash doctor: which known quantization failure explains a crash, and which rule reports it.

A quantized model that raises is the most common report. This module is the one table of the failures qdoctor
knows, read by the rules that report them (QD011, QD015, QD016 here; QD002 and QD003 own theirs) and by QD014
unexplained-crash, which reports every crash no entry explains: a crash is never hidden. Pure functions over Facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qdoctor import facts as F
from qdoctor.facts import CrashInfo, Facts, SourceLocation, TraceEvent
from qdoctor.facts.location import first_line

# Where a crash was raised, as far as the execution trace tells.
FUNCTION = "function"  # by a torch function called in a forward() (torch.add, +, torch.cat, x.exp())
MODULE = "module"  # inside a leaf module
SCRIPT = "script"  # no trace event: the script raised it, or qdoctor's own run did not reach it

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
        "int8-into-float-module",
    ),
    (
        re.compile(r"mat1 and mat2 must have the same dtype, but got (?P<got>Q\w+) and (?P<want>\w+)"),
        "int8-into-float-module",
    ),
    (re.compile(r"Expected input data type (?P<want>\w+) but got (?P<got>\w+)"), "activation-dtype"),
    (re.compile(r"data type of input should be (?P<want>\w+)"), "activation-dtype"),
    (re.compile(r"Weight observer must have a dtype of (?P<want>\w+), got (?P<got>[\w.]+)"), "weight-dtype"),
)
_MIXED = re.compile(
    r"promoteTypes with quantized numbers|not supported on quantized tensors|"
    r"Could not run 'aten::qscheme' with arguments from the 'CPU' backend"
)


@dataclass(frozen=True)
class CrashCause:
    rule: str  # the rule that reports this crash
    cause: str  # short name of the cause, e.g. "int8-into-aten-function"
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
    """The crash of qdoctor's run of the subject, then the script's own crash when it is a different one."""
    found: list[CrashInfo] = []
    if facts.trace is not None and facts.trace.crash is not None:
        found.append(facts.trace.crash)
    load = facts.target.load_crash
    if load is not None and not any(same_crash(load, c) for c in found):
        found.append(load)
    return found


def raising_event(facts: Facts, crash: CrashInfo) -> TraceEvent | None:
    """The trace event that was running when the subject raised: the last one, if it never returned."""
    if crash.phase != "run" or facts.trace is None or not facts.trace.events:
        return None
    last = facts.trace.events[-1]
    return last if not last.outputs else None


def has_int8_modules(facts: Facts) -> bool:
    return bool(facts.modules_of_kind(F.QUANTIZED, F.DYNAMIC_QUANTIZED))


def classify(crash: CrashInfo, facts: Facts) -> CrashCause | None:
    """The known cause of ``crash``, or None when qdoctor cannot explain it."""
    message = crash.message
    event = raising_event(facts, crash)
    level = SCRIPT if event is None else FUNCTION if event.kind == "function" else MODULE
    backend = _BACKEND.search(message)
    op = backend.group("op") if backend else None

    if _CUDA.search(message) and has_int8_modules(facts):
        return CrashCause("QD015", "int8-on-cuda", level, op)
    if _ENGINE.search(message) and crash is facts.crash:
        return CrashCause("QD003", "no-quantized-engine", level, op)
    if _MIXED.search(message):
        if level == FUNCTION:
            return CrashCause("QD011", "int8-and-float-mixed", level, event.name if event else op)
        return CrashCause("QD016", "int8-and-float-mixed", level, op)
    for pattern, cause in _DTYPE:
        match = pattern.search(message)
        if match:
            groups = match.groupdict()
            return CrashCause("QD016", cause, level, op, got=groups.get("got"), want=groups.get("want"))
    if backend and backend.group("backend") in ("CPU", "QuantizedCPU"):
        if level == FUNCTION:
            kind = "float-into-int8-function" if backend.group("backend") == "CPU" else "int8-into-aten-function"
            return CrashCause("QD011", kind, level, op)
        if level == MODULE:
            return CrashCause("QD002", "stub-missing", level, op)
    return None


def crash_source(crash: CrashInfo, facts: Facts) -> SourceLocation | None:
    """The user's line for a crash: the first frame in their file from the raise point, else where the module that
    raised was created."""
    if crash.file and crash.line:
        return SourceLocation(crash.file, crash.line, crash.code or "")
    info = facts.module(crash.module) if crash.module is not None else None
    return info.source if info is not None else None
