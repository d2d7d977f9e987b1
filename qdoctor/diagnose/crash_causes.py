"""The crash doctor: which known quantization failure explains a crash (int8 and float meeting, a missing engine,
int8 kernels run on CUDA, a mode or qconfig that a quantization step refuses). Pure functions over Facts.

The table is keyed by cause, and it reads the whole traceback, library frames included: a crash raised inside
torchvision's resnet (`out += identity` on quint8 tensors) is the same missing-FloatFunctional cause as one raised in
the user's own forward(), and the report names the library line as well as the user's (``library_frame``).
tests/test_crash_corpus.py checks the table against the errors people report (fixtures/crashes/, one each, with links).

A quantized model that raises is the most common report. ``classify`` is the one ordered table of the failures
qdoctor knows; each cause it names is a declared ``Cause`` that the rule reporting it claims with
``@rule(..., owns=...)``. QD014 unexplained-crash reports every crash that no registered rule owns: a crash is never
hidden. Quantization-flow failures (export, prepare_pt2e, moved imports) are qdoctor.diagnose.flow_causes.

This module (with flow_causes, the flow-step half of the same table) is the one place that reads crash messages: rules
consume ``classify``'s ``KnownCrash`` (its cause, op, backend, dtypes) and the parsed pieces below
(``backend_error``), never a regex of their own. tests/test_crash_messages.py fails on a regex elsewhere in qdoctor
that recognizes a message of the crash corpus.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from qdoctor import facts as F
from qdoctor.diagnose.cause import Cause
from qdoctor.facts import CrashInfo, Facts, SourceLocation, TraceEvent
from qdoctor.facts.location import first_line, package_path, same_file

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
INT8_TO_NUMPY = _cause("int8-to-numpy")  # an int8 tensor left the model (no DeQuantStub) and met numpy or a float API
INT8_INDICES = _cause("int8-indices")  # a QuantStub quantized the token ids an Embedding takes
DROPOUT_IN_TRAIN_MODE = _cause("dropout-in-train-mode")  # a Dropout left in train mode got an int8 tensor
# A quantization step refused the model's mode: fusing Conv+BN (fuse_modules, prepare_fx) in train mode, or
# prepare_qat on a model in eval mode. The model stays float: a flow-step cause.
FUSION_MODE = Cause("fusion-mode", lambda crash, facts: mode_error(crash) is not None, flow_step=True)
# A qconfig the module cannot take (Embedding without float_qparams, a quint8 dynamic Linear, per-channel weights on
# ConvTranspose): raised by prepare/convert/quantize_dynamic, so it is a flow-step cause as well.
UNSUPPORTED_QCONFIG = Cause(
    "unsupported-qconfig", lambda crash, facts: qconfig_error(crash) is not None, flow_step=True
)

_BACKEND = re.compile(r"Could not run '(?P<op>[\w:.]+)' with arguments from the '(?P<backend>\w+)' backend")
_CUDA = re.compile(
    r"NVIDIA driver|not compiled with CUDA|no CUDA GPUs|CUDA error|CUDA driver|cuda:\d|'(?:Quantized)?CUDA' backend",
    re.I,
)
# A build or setting without the engine (QD003 backend-mismatch reads it from Facts.crash: the run's crash, else the
# script's): "Didn't find engine for operation quantized::conv2d_prepack NoQEngine", "quantized engine NoQEngine is
# not supported", "quantized engine FBGEMM is not supported".
_ENGINE = re.compile(
    r"Didn't find engine for operation (?P<op>quantized::\w+)|quantized engine \w+ is not supported|NoQEngine"
)
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
_NUMPY = re.compile(
    r"Got unsupported ScalarType Q(?:U)?Int\d+|can't convert .*quantized|numpy\(\) .*quantized|load_scalar: invalid type",
    re.I,
)
# An op with no int8 kernel given an int8 tensor, said another way (x * 2, x + 1, x / 2 on a quint8 tensor).
_NO_INT8_KERNEL = re.compile(r"empty_strided not supported on quantized tensors|not supported on quantized tensors yet")
_INDICES = re.compile(
    r"'indices' to have one of the following scalar types: .*but got Quantized\w+|"
    r"Quantize only works on Float Tensor, got (?:Long|Int)"
)
_DROPOUT_OP = re.compile(r"aten::(?:bernoulli|native_dropout|dropout)")
# (pattern, what went wrong, fix): a mode that fusion or prepare_qat refuses.
# The mode errors a fusion step raises (fuse_modules, or prepare_fx fusing first): the modules stay unfused.
FUSION_MODE_ERRORS = (
    (
        re.compile(r"Fusion only for eval!"),
        "Conv+BatchNorm fusion (fuse_modules, or prepare_fx, which fuses first) ran on a model in train mode: "
        "post-training fusion folds BatchNorm's running statistics into the conv and only works in eval mode",
        "{model}.eval()  # before fuse_modules / prepare_fx: fusion folds BatchNorm into the conv\n"
        "prepared = prepare_fx({model}, qconfig_mapping, example_inputs)",
    ),
    (
        re.compile(r"Conv and BN both must be in the same mode"),
        "fuse_modules got a conv and a BatchNorm in different modes (one .train(), one .eval()): call .eval() on "
        "the whole model (post-training) or .train() on the whole model (QAT) before fusing",
        "{model}.eval()  # the whole model, not one layer\n"
        'torch.ao.quantization.fuse_modules({model}, [["conv", "bn"]], inplace=True)',
    ),
)
MODE_ERRORS = (
    *FUSION_MODE_ERRORS,
    (
        re.compile(r"prepare_qat only works on models? in training mode|only works on models in training mode"),
        "prepare_qat (quantization-aware training) got a model in eval mode: QAT trains with fake-quant, so the "
        "model must be in train mode while it is prepared and trained",
        "{model}.train()\ntorch.ao.quantization.prepare_qat({model}, inplace=True)\n"
        "# ... train ...\n{model}.eval()\nquantized = torch.ao.quantization.convert({model})",
    ),
)
# (pattern, explanation, fix): a qconfig the module cannot take.
QCONFIG_ERRORS = (
    (
        re.compile(r"Embedding quantization is only supported with float_qparams_weight_only_qconfig"),
        "nn.Embedding takes only weight-only quantization with float qparams; the model-wide qconfig (static "
        "activations) reached it",
        "from torch.ao.quantization import float_qparams_weight_only_qconfig\n"
        "{model}.{module}.qconfig = float_qparams_weight_only_qconfig  # before prepare()",
    ),
    (
        re.compile(
            r"The only supported dtypes? for dynamic quantized linear (?:are|is) (?P<want>[\w ,]+), got: (?P<got>[\w.]+)"
        ),
        "dynamic quantization stores Linear weights as qint8 (or float16); the requested dtype has no kernel",
        "quantized = torch.ao.quantization.quantize_dynamic({model}, {{torch.nn.Linear}}, dtype=torch.qint8)",
    ),
    (
        re.compile(r"Per channel weight observer is not supported yet for ConvTranspose"),
        "the default x86/fbgemm qconfig observes weights per channel, which ConvTranspose does not support here: "
        "give the ConvTranspose layers a per-tensor weight observer",
        "from torch.ao.quantization import QConfig, default_weight_observer\n"
        "{model}.{module}.qconfig = QConfig(activation={model}.qconfig.activation, weight=default_weight_observer)",
    ),
)
_MIXED = re.compile(
    r"promoteTypes with quantized numbers|not supported on quantized tensors|"
    r"Could not run 'aten::qscheme' with arguments from the 'CPU' backend"
)


# A crash quoted in a bug report (qdoctor.load.report_tracebacks), not seen by qdoctor.
REPORT_PHASE = "report"
_QUANTIZED_OP = re.compile(r"quantized::|Quantized")
# The operators of layers (a module's forward), as opposed to tensor functions called in a forward().
_LAYER_OP = re.compile(
    r"Could not run '[\w:]*(?:conv|linear|addmm|batch_norm|layer_norm|group_norm|thnn|mkldnn|max_pool|avg_pool|"
    r"adaptive_avg_pool|hardswish|embedding|lstm|gru)",
    re.I,
)


def _quoted_level(message: str) -> str:
    """Where a crash quoted without frames was raised, from the operator it names: a layer's operator (a conv,
    linear, norm, pool) inside a module, any other operator by a function called in forward()."""
    if not _BACKEND.search(message):
        return SCRIPT
    return MODULE if _LAYER_OP.search(message) else FUNCTION


@dataclass(frozen=True)
class KnownCrash:
    """A crash that ``classify`` explains: its cause, where it was raised and what the message tells."""

    cause: Cause
    level: str  # FUNCTION, MODULE or SCRIPT
    op: str | None = None  # the operator the message names
    got: str | None = None  # dtype the op received, when the message says
    want: str | None = None  # dtype it needed


@dataclass(frozen=True)
class BackendError:
    """ "Could not run 'OP' with arguments from the 'BACKEND' backend": an operator given a tensor of a kind it has no
    kernel for."""

    op: str  # "quantized::conv2d.new", "aten::add.out"
    backend: str  # "CPU" (a float tensor), "QuantizedCPU" (an int8 tensor), "CUDA", ...

    @property
    def float_into_int8(self) -> bool:
        """An int8 kernel (quantized::...) given a float tensor."""
        return self.backend == "CPU" and self.op.startswith("quantized::")

    @property
    def int8_into_float(self) -> bool:
        """A float op (aten::...) given an int8 tensor: it has no int8 kernel."""
        return self.backend == "QuantizedCPU" and self.op.startswith("aten::")


def quantized_op_on_cpu(crash: CrashInfo) -> bool:
    """A quantized op run on the float CPU backend (the message names both): with PT2E, a model whose quantizer did
    not match the CPU raises this when run (QD018)."""
    return "quantized" in crash.message and "'CPU' backend" in crash.message


def backend_error(message: str) -> BackendError | None:
    """The operator and backend a "Could not run ..." message names, or None when it is not such a message."""
    match = _BACKEND.search(message)
    return BackendError(match.group("op"), match.group("backend")) if match else None


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


# A name holding what a call returned instead of the model: an nn.Module method used on it raises "'<type>' object
# has no attribute '<method>'" (in the script or in the flow step it was handed to); the type says which call it was.
_NO_ATTRIBUTE = re.compile(r"'(?P<type>[\w.]+)' object has no attribute '(?P<attr>\w+)'")
_MODULE_API = set("eval train named_children named_modules modules parameters state_dict apply qconfig".split())
_STATE_DICT = "a state_dict, not the model: build it, call `model.load_state_dict(state_dict)` and use `model`"
_RETURNED_INSTEAD = {
    "_IncompatibleKeys": "what `load_state_dict(...)` returned (its missing and unexpected keys), not the model: it "
    "loads in place, so call `model.load_state_dict(state_dict)` and keep using `model`",
    "OrderedDict": _STATE_DICT,
    "dict": _STATE_DICT,
    "NoneType": "None, not the model: a call that works in place and returns nothing was assigned to it (e.g. "
    "`model = quantize_(model, config)`); call it alone and keep using the model",
}


def not_a_model(crash: CrashInfo) -> tuple[str, str] | None:
    """(the object's type, what it holds in words) when an AttributeError names an nn.Module method missing on a
    load_state_dict result, a state_dict or None: a name held that object where the script meant its model."""
    found = _NO_ATTRIBUTE.search(crash.message) if crash.type == "AttributeError" else None
    holds = _RETURNED_INSTEAD.get(found["type"].rsplit(".", 1)[-1]) if found and found["attr"] in _MODULE_API else None
    return (found["type"], holds) if found and holds else None


def classify(crash: CrashInfo, facts: Facts) -> KnownCrash | None:
    """The known cause of ``crash``, or None when qdoctor cannot explain it. Ordered: the first entry that matches."""
    message = crash.message
    event = raising_event(facts, crash)
    if event is None:
        level = _traceback_level(crash)
        if crash.phase == REPORT_PHASE and level == SCRIPT:
            level = _quoted_level(message)
    else:
        level = FUNCTION if event.kind == "function" else MODULE
    backend = _BACKEND.search(message)
    op = backend.group("op") if backend else None
    # torch < 1.5 named the backends "CPUTensorId", "QuantizedCPUTensorId"
    backend_name = backend.group("backend").removesuffix("TensorId") if backend else None

    quoted = crash.phase == REPORT_PHASE  # pasted in a report: no model facts to tell int8 from float
    if _CUDA.search(message) and (has_int8_modules(facts) or (quoted and _QUANTIZED_OP.search(message))):
        return KnownCrash(INT8_ON_CUDA, level, op)
    engine = _ENGINE.search(message)
    if engine and (crash is facts.crash or quoted):
        return KnownCrash(NO_QUANTIZED_ENGINE, level, engine.group("op"))  # the op that found no engine, if named
    if _MIXED.search(message):
        if level == FUNCTION:
            return KnownCrash(INT8_AND_FLOAT_IN_FUNCTION, level, event.name if event else op)
        return KnownCrash(INT8_AND_FLOAT_MIXED, level, op)
    for pattern, cause in _DTYPE:
        match = pattern.search(message)
        if match:
            groups = match.groupdict()
            return KnownCrash(cause, level, op, got=groups.get("got"), want=groups.get("want"))
    if _INDICES.search(message):
        return KnownCrash(INT8_INDICES, level)
    if backend_name == "QuantizedCPU" and op and _DROPOUT_OP.search(op):
        return KnownCrash(DROPOUT_IN_TRAIN_MODE, level, op)
    if _NO_INT8_KERNEL.search(message) and level in (FUNCTION, MODULE):
        return KnownCrash(INT8_INTO_ATEN_FUNCTION if level == FUNCTION else STUB_MISSING, level, op)
    if backend_name in ("CPU", "QuantizedCPU"):
        if level == FUNCTION:
            kind = FLOAT_INTO_INT8_FUNCTION if backend_name == "CPU" else INT8_INTO_ATEN_FUNCTION
            return KnownCrash(kind, level, op)
        if level == MODULE:
            return KnownCrash(STUB_MISSING, level, op)
    if _NUMPY.search(message):
        return KnownCrash(INT8_TO_NUMPY, level)
    return None


def mode_error(crash: CrashInfo) -> tuple[str, str] | None:
    """What a mode error means and its fix (with {model} to fill), or None."""
    for pattern, explanation, fix in MODE_ERRORS:
        if pattern.search(crash.message):
            return explanation, fix
    return None


def fusion_refused(crash: CrashInfo) -> bool:
    """A fusion step refused the model's mode: the modules it was asked to fuse stayed unfused."""
    return any(pattern.search(crash.message) for pattern, _, _ in FUSION_MODE_ERRORS)


def qconfig_error(crash: CrashInfo) -> tuple[str, str] | None:
    """What a refused qconfig means and its fix (with {model} and {module} to fill), or None."""
    for pattern, explanation, fix in QCONFIG_ERRORS:
        if pattern.search(crash.message):
            return explanation, fix
    return None


# The module types a refused-qconfig message names ("Embedding quantization is only supported with ...").
_QCONFIG_MODULE_TYPES = ("Embedding", "ConvTranspose")


def qconfig_module_type(crash: CrashInfo) -> str | None:
    """The module type a refused-qconfig message names (matched against ModuleInfo.type), or None."""
    return next((kind for kind in _QCONFIG_MODULE_TYPES if kind in crash.message), None)


@dataclass(frozen=True)
class Frame:
    """One frame of a traceback read back from its text."""

    file: str
    line: int
    function: str
    code: str


_FRAME_LINE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')
# torch's own Python (dispatch, nn.Module.__call__, functional), qdoctor's wrappers and frozen importlib: neither the
# user's code nor a library's; the library line is the deepest frame that is none of these.
_INTERNAL = re.compile(r"[/\\](?:torch|typing_extensions)[/\\]|^<|[/\\]importlib[/\\]|[/\\]contextlib\.py$")
# qdoctor's own frames (its tracing mode, its loader) by the package's real folder: a path segment "qdoctor" would
# also match a checkout named qdoctor, and with it every library installed in that checkout's .venv
_QDOCTOR_DIR = os.path.dirname(os.path.abspath(__file__)).rsplit(os.sep, 1)[0] + os.sep


def traceback_frames(crash: CrashInfo) -> list[Frame]:
    """The frames of the crash's traceback, outermost first (the chained exceptions' frames are left out)."""
    text = crash.traceback
    # a chained exception prints its cause first: keep only the last traceback, the one that was raised
    marker = "Traceback (most recent call last):"
    if marker in text:
        text = text[text.rindex(marker) :]
    frames: list[Frame] = []
    lines = text.splitlines()
    for i, raw in enumerate(lines):
        match = _FRAME_LINE.match(raw)
        if not match:
            continue
        code = lines[i + 1].strip() if i + 1 < len(lines) and not _FRAME_LINE.match(lines[i + 1]) else ""
        if code.startswith(("^", "~")):
            code = ""
        frames.append(Frame(match.group("file"), int(match.group("line")), match.group("func").strip(), code))
    return frames


def is_internal(file: str) -> bool:
    return bool(_INTERNAL.search(file)) or os.path.abspath(file).startswith(_QDOCTOR_DIR)


def library_frame(crash: CrashInfo, facts: Facts) -> SourceLocation | None:
    """The library line that made the failing call, when the crash was raised in a library's code rather than the
    user's (torchvision's resnet `out += identity`): the deepest frame that is neither torch's own code nor the
    user's file. None when the user's own code made the call."""
    user = facts.target.file
    for frame in reversed(traceback_frames(crash)):
        if is_internal(frame.file):
            continue
        if user and same_file(frame.file, user):
            return None
        return SourceLocation(frame.file, frame.line, frame.code)
    return None


def _traceback_level(crash: CrashInfo) -> str:
    """Where the crash was raised when the execution trace does not tell (the script raised it): read from its
    traceback. Inside a torch module's forward (nn.Conv2d, a quantized module): MODULE; by a torch function or an
    operator called in some forward() or in the script: FUNCTION; anything else: SCRIPT."""
    frames = traceback_frames(crash)
    if not frames:
        return SCRIPT
    deepest = frames[-1]
    file = deepest.file.replace("\\", "/")
    if "/torch/" in file:
        if "functional_modules.py" in file:  # FloatFunctional / QFunctional add, mul, cat: a function call
            return FUNCTION
        if "/torch/nn/modules/" in file or "/torch/ao/nn/" in file or file.endswith("/torch/nn/functional.py"):
            return MODULE
        return SCRIPT
    if deepest.function == "<module>":
        return SCRIPT
    return FUNCTION  # an operator on tensors, in a forward() (the user's or a library's) or a helper


def crash_source(crash: CrashInfo, facts: Facts) -> SourceLocation | None:
    """The user's line for a crash: the first frame in their file from the raise point, else where the module that
    raised was created."""
    if crash.file and crash.line:
        return SourceLocation(crash.file, crash.line, crash.code or "")
    info = facts.module(crash.module) if crash.module is not None else None
    return info.source if info is not None else None


def user_line(crash: CrashInfo, facts: Facts) -> SourceLocation | None:
    """The user's line behind a crash: its own frame in the user's file, else (qdoctor's run raised what the script
    raised too) the script's line that called the model."""
    if crash.file and crash.line:
        return SourceLocation(crash.file, crash.line, crash.code or "")
    load = facts.target.load_crash
    if load is not None and load is not crash and same_crash(load, crash) and load.file and load.line:
        return SourceLocation(load.file, load.line, load.code or "")
    return None


def short_path(file: str) -> str:
    """A library file named from its package on (".../site-packages/torchvision/models/resnet.py" ->
    "torchvision/models/resnet.py"), else by its last three parts."""
    return package_path(file) or "/".join(file.replace("\\", "/").split("/")[-3:])


def sites_text(crash: CrashInfo, facts: Facts) -> str:
    """One sentence naming the library line and the user's line of a crash raised in library code; "" otherwise."""
    library = library_frame(crash, facts)
    if library is None:
        return ""
    user = user_line(crash, facts)
    code = f" `{library.code}`" if library.code else ""
    text = f"It is raised in library code, {short_path(library.file)}:{library.line}{code}"
    if user is not None:
        text += f", called from your line {user.line}" + (f" `{user.code}`" if user.code else "")
    return text + "."


def site_evidence(crash: CrashInfo, facts: Facts) -> dict[str, str]:
    library = library_frame(crash, facts)
    user = user_line(crash, facts)
    found: dict[str, str] = {}
    if library is not None:
        found["library_line"] = f"{short_path(library.file)}:{library.line}" + (
            f" {library.code}" if library.code else ""
        )
    if user is not None:
        found["user_line"] = f"{user.line}" + (f" {user.code}" if user.code else "")
    return found
