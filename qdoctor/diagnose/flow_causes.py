"""Map a crash in a quantization flow (torch.export, prepare_pt2e/convert_pt2e, torchao quantize_, an import that
moved between torch and torchao versions) to its cause and a fix. Pure functions of the crash text: no torch import.

Diagnosed at rule time from the crashes in Facts: each cause is a declared flow-step ``Cause`` (FLOW_CAUSES) that the
rule reporting it claims with ``@rule(..., owns=...)``. Eager int8 crashes are qdoctor.diagnose.crash_causes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from qdoctor.diagnose.cause import Cause
from qdoctor.diagnose.crash_causes import mode_error, not_a_model, qconfig_error, same_crash
from qdoctor.diagnose.flow_failures import KNOWN_FAILURES
from qdoctor.errors import ScriptFailedError
from qdoctor.facts import CrashInfo, Facts
from qdoctor.facts.location import first_line


@dataclass
class FlowFailure:
    """A quantization flow step that raised (export, prepare, convert, an import that moved), mapped to its cause."""

    step: str  # "import", "export", "prepare_pt2e", "convert_pt2e", "eval/train", "run", "quantize_", ...
    cause: str  # short id, e.g. "data-dependent-control-flow"
    explanation: str  # one or two sentences for the user
    fix: str  # code the user can paste
    error: str  # "ExceptionType: first line of the message"
    file: str | None = None
    line: int | None = None
    code: str | None = None
    layers: tuple[str, ...] = ()  # the layer types the step was working on when it raised (a fusion's pair)


# Modules that moved out of torch into torchao (torch.ao.quantization's PT2E code lives in torchao since 2.10).
MOVED_MODULES = {
    "torch.ao.quantization.quantize_pt2e": "torchao.quantization.pt2e.quantize_pt2e",
    "torch.ao.quantization.quantizer.x86_inductor_quantizer": "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer",
    "torch.ao.quantization.quantizer.xnnpack_quantizer": "executorch.backends.xnnpack.quantizer.xnnpack_quantizer",
    "torch.ao.quantization.quantizer.xpu_inductor_quantizer": "torchao.quantization.pt2e.quantizer.xpu_inductor_quantizer",
    "torch.ao.quantization.quantizer": "torchao.quantization.pt2e.quantizer",
    "torch.ao.quantization.pt2e": "torchao.quantization.pt2e",
}
PT2E_IMPORTS = """\
import torch
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, convert_pt2e
import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

quantizer = xiq.X86InductorQuantizer()
quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
exported = torch.export.export(model.eval(), example_inputs).module()
prepared = prepare_pt2e(exported, quantizer)
for batch in calibration_batches:
    prepared(*batch)
converted = convert_pt2e(prepared)"""


PT2E_MOVED = "pt2e-moved-to-torchao"
NO_SUCH_API = "no-such-quantization-api"  # a name torch.ao.quantization never had, or no longer has
TORCHAO_API_MOVED = "torchao-api-moved"
NOT_A_MODEL = "not-a-model"  # the step was handed what a call returned (load_state_dict's keys, a state_dict, None)
UNRECOGNIZED = "unrecognized"  # a flow step raised an error qdoctor does not know: reported with its location


STATIC_FLOW = """\
from torch.ao.quantization import get_default_qconfig, prepare, convert

model.eval()
model.qconfig = get_default_qconfig("x86")   # "qnnpack" on ARM
prepared = prepare(model)                     # observers in
with torch.no_grad():
    for images, _ in calibration_loader:      # ~100 representative batches
        prepared(images)
model_static = convert(prepared)              # int8 modules out
# or in one call: model_static = torch.ao.quantization.quantize(model, run_fn, run_args)
# a model that adds tensors in forward() (torchvision ResNet) needs QuantStub/DeQuantStub and FloatFunctional,
# or FX graph mode: torch.ao.quantization.quantize_fx.prepare_fx / convert_fx"""

# Names scripts import from torch.quantization / torch.ao.quantization that it does not have: (explanation, fix).
_NO_SUCH_API = {
    "quantize_static": (
        "there is no quantize_static in any torch release (the name is borrowed from ONNX Runtime): eager static "
        "quantization is prepare -> calibrate -> convert, or quantize(model, run_fn, run_args), which runs "
        "run_fn(prepared, *run_args) to calibrate",
        STATIC_FLOW,
    ),
    "get_default_qconfig_dict": (
        "get_default_qconfig_dict is not re-exported by the old torch.quantization alias; it lives in "
        "torch.ao.quantization, deprecated since torch 1.13 for get_default_qconfig_mapping (FX takes a "
        "QConfigMapping)",
        'from torch.ao.quantization import get_default_qconfig_mapping\nqconfig_mapping = get_default_qconfig_mapping("x86")',
    ),
    "get_default_qat_qconfig_dict": (
        "get_default_qat_qconfig_dict is not re-exported by the old torch.quantization alias; it lives in "
        "torch.ao.quantization, deprecated since torch 1.13 for get_default_qat_qconfig_mapping",
        "from torch.ao.quantization import get_default_qat_qconfig_mapping\n"
        'qconfig_mapping = get_default_qat_qconfig_mapping("x86")',
    ),
}
_MISSING_NAME = (
    re.compile(r"cannot import name '(?P<name>\w+)' from '(?P<module>torch(?:\.ao)?\.quantization[\w.]*)'"),
    re.compile(r"module '(?P<module>torch(?:\.ao)?\.quantization[\w.]*)' has no attribute '(?P<name>\w+)'"),
)


def no_such_api(message: str, torch_version: str) -> tuple[str, str] | None:
    """(explanation, fix) for a name the script takes from torch.(ao.)quantization that this torch does not have."""
    for pattern in _MISSING_NAME:
        match = pattern.search(message)
        if match:
            name, module = match.group("name"), match.group("module")
            known = _NO_SUCH_API.get(name)
            if known is not None:
                return f"{module} has no {name}: {known[0]}", known[1]
            return (
                f"torch {torch_version} has no {module}.{name}: not an API of this release (it may have been "
                "renamed, moved or never existed); see the torch.ao.quantization documentation for the current name",
                "",
            )
    return None


def moved_module_hint(module_name: str | None, torch_version: str) -> str | None:
    """Where a module that no longer imports went, or None when it is not one qdoctor knows."""
    if not module_name:
        return None
    for old, new in MOVED_MODULES.items():
        if module_name == old or module_name.startswith(old + "."):
            return (
                f"torch {torch_version} has no {old}: PT2E quantization moved to torchao; import {new} "
                "(pip install torchao)"
            )
    return None


def torchao_api_hint(message: str, torchao_version: str | None) -> str | None:
    """An ImportError/AttributeError inside torchao: name the installed version and what moved."""
    imported = re.search(r"cannot import name '(\w+)' from '(torchao[\w.]*)'", message)
    attribute = re.search(r"module '(torchao[\w.]*)' has no attribute '(\w+)'", message)
    if imported:
        name, module = imported.group(1), imported.group(2)
    elif attribute:
        module, name = attribute.group(1), attribute.group(2)
    else:
        return None
    installed = f"torchao {torchao_version}" if torchao_version else "the installed torchao"
    return (
        f"{installed} has no `{name}` in {module}: torchao renames and moves its quantization APIs between releases "
        "(e.g. the function-style int8_dynamic_activation_int8_weight() became Int8DynamicActivationInt8WeightConfig, "
        "and PT2E moved into torchao.quantization.pt2e); install the torchao version the script was written for, "
        f"or update the import to the name {installed} uses"
    )


def script_failure_text(error: ScriptFailedError, torch_version: str, torchao_version: str | None) -> str:
    """The one line for a script that died before defining a model, with the cause when a release moved an API."""
    hint = moved_module_hint(error.module_name, torch_version) or torchao_api_hint(
        error.exception_message, torchao_version
    )
    return error.explained.format(hint=hint) if hint and error.explained else str(error)


_PT2E_STEPS = ("prepare_pt2e", "prepare_qat_pt2e", "convert_pt2e")


# torch.ao.quantization's eager-mode steps: an error raised inside one is a flow failure as well.
_EAGER_STEPS = ("prepare", "prepare_qat", "convert", "quantize_dynamic", "quantize", "quantize_qat", "fuse_modules")


def _step_from_traceback(traceback_text: str) -> str | None:
    """The quantization step the script called, when the crash is inside one: the outermost step of the traceback
    (prepare_qat runs convert to swap in the QAT modules, quantize_dynamic runs convert: the user called the outer
    one), else the library the crash is in."""
    frames = re.findall(r'File "([^"]+)", line \d+, in (\w+)', traceback_text)
    for file, function in frames:
        if not re.search(r"[/\\]torch(ao)?[/\\]", file):
            continue  # the user's own function of that name (a wrapper) is not the step
        if function in ("prepare_pt2e", "prepare_qat_pt2e", "convert_pt2e"):
            return function
        if function == "quantize_" and "torchao" in file:
            return "quantize_"
        if function in ("prepare_fx", "convert_fx", "prepare_qat_fx", "convert_to_reference_fx", "fuse_fx"):
            return function
        if function in _EAGER_STEPS and "/torch/ao/quantization/" in file.replace("\\", "/"):
            return function
    for at in range(len(frames) - 1, -1, -1):
        file = frames[at][0]
        if "/torch/export/" in file or "/torch/_export/" in file:
            return "export"
        if "/torchao/" in file:
            # a torchao helper that ran the model (torchao.utils.benchmark_model): the model raised, not torchao
            ran_model = any(f in ("_call_impl", "_wrapped_call_impl", "forward") for _file, f in frames[at + 1 :])
            return None if ran_model else "torchao"
    return _library_entry(traceback_text)


def _library_entry(traceback_text: str) -> str | None:
    """The public torch.ao.quantization function the script called when the crash is inside it (a step qdoctor does
    not name above): the first frame of that package entered from outside torch, not a module's forward, when the
    error was raised in torch (not in a function of the script's that the step called back)."""
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', traceback_text)
    if not frames or "/torch/" not in frames[-1][0].replace("\\", "/"):
        return None
    for (caller, _), (file, function) in zip(frames, frames[1:], strict=False):
        inside = "/torch/ao/quantization/" in file.replace("\\", "/")
        from_outside = "/torch/" not in caller.replace("\\", "/")
        if inside and from_outside and not function.startswith("_") and function not in ("forward", "__call__"):
            return function
    return None


# A fusion method of torch.ao.quantization raised: the pair it was fusing, from its name (fuse_convtranspose_bn).
_FUSER_FRAME = re.compile(r'fuser_method_mappings\.py", line \d+, in (fuse_\w+)')
_FUSED_LAYERS = {
    "conv": "Conv",
    "convtranspose": "ConvTranspose",
    "linear": "Linear",
    "bn": "BatchNorm",
    "relu": "ReLU",
}
FUSION_FAILED = "fusion-failed"
LEAVE_UNFUSED = """\
# leave the {pair} pair unfused: fuse (and prepare/convert) with a BackendConfig without that pattern
from torch.ao.quantization.backend_config import BackendConfig, get_native_backend_config

native = get_native_backend_config()
backend_config = BackendConfig(native.name).set_backend_pattern_configs(
    [c for c in native.configs if not (isinstance(c.pattern, tuple) and
                                       [getattr(t, "__name__", "").rstrip("123d") for t in c.pattern] == {names})]
)
fused = fuse_fx(model.eval(), backend_config=backend_config)
# prepare_fx(..., backend_config=backend_config) and convert_fx(..., backend_config=backend_config) likewise;
# eager mode: leave that pair out of the fuse_modules list"""


# fuse_modules was handed a sequence of layer types no fuser method exists for (ConvTranspose2d, BatchNorm2d, ReLU)
_NO_FUSER = re.compile(r"did not find fuser method for: \((?P<types>[^)]*)\)")
NO_FUSER = "no-fuser-for-sequence"


def _no_fuser(message: str) -> str | None:
    """The layer types of a sequence fuse_modules has no fuser for ("ConvTranspose2d + BatchNorm2d + ReLU")."""
    match = _NO_FUSER.search(message)
    types = re.findall(r"<class '(?:\w+\.)*(\w+)'>", match.group("types")) if match else []
    return " + ".join(types) or None


def _fusion_failure(traceback_text: str) -> tuple[str, ...] | None:
    """The layer types a torch fusion method was fusing when it raised (("ConvTranspose", "BatchNorm")), or None."""
    found = _FUSER_FRAME.findall(traceback_text)
    if not found:
        return None
    words = found[-1].removeprefix("fuse_").split("_")
    return tuple(_FUSED_LAYERS.get(word, word) for word in words)


def diagnose(crash: CrashInfo | None, torch_version: str, torchao_version: str | None) -> FlowFailure | None:
    """The flow failure behind a crash, or None when the crash is not a quantization-flow failure."""
    if crash is None:
        return None
    if mode_error(crash) or qconfig_error(crash):
        return None  # a model mode or a qconfig the step refused: the rules that own those causes explain it
    text = f"{crash.type}: {crash.message}"
    headline = first_line(text)[:300]

    def failure(step: str, cause: str, explanation: str, fix: str) -> FlowFailure:
        return FlowFailure(step, cause, explanation, fix, headline, crash.file, crash.line, crash.code)

    if crash.type in ("ModuleNotFoundError", "ImportError"):
        module = re.search(r"No module named '([\w.]+)'", crash.message)
        hint = moved_module_hint(module.group(1) if module else None, torch_version)
        if hint:
            return failure("import", PT2E_MOVED, hint + ".", PT2E_IMPORTS)
    missing = no_such_api(crash.message, torch_version) if crash.type in ("ImportError", "AttributeError") else None
    if missing is not None:
        return failure("import" if crash.type == "ImportError" else "call", NO_SUCH_API, missing[0] + ".", missing[1])
    api = torchao_api_hint(crash.message, torchao_version)
    if api and crash.type in ("ImportError", "AttributeError"):
        return failure("import", TORCHAO_API_MOVED, api + ".", "")
    step = _step_from_traceback(crash.traceback)
    fused = _fusion_failure(crash.traceback)
    if fused is not None and step is not None:
        pair = " + ".join(fused)
        failed = failure(
            step,
            FUSION_FAILED,
            f"torch's own fusion of a {pair} pair raised inside {step}: torch.ao.quantization cannot fuse this pair "
            + (
                "(it folds the BatchNorm scale as if the ConvTranspose had groups = 1). "
                if "ConvTranspose" in fused
                else ""
            )
            + "The model is not at fault; leave that pair unfused.",
            LEAVE_UNFUSED.format(pair=pair, names=list(fused)),
        )
        failed.layers = fused
        return failed
    unfusable = _no_fuser(crash.message)
    if unfusable is not None:
        return failure(
            step or "fuse_modules",
            NO_FUSER,
            f"torch.ao.quantization has no fuser for the sequence {unfusable}: it fuses Conv1d/2d/3d with BatchNorm "
            "and/or ReLU, Linear with BatchNorm1d or ReLU, BatchNorm2d/3d with ReLU and ConvTranspose with "
            "BatchNorm (without ReLU). The model is not at fault: list a sequence it knows (a shorter one) and "
            "leave the rest unfused.",
            "",
        )
    wrong = not_a_model(crash)
    if wrong is not None and step is not None:
        return failure(
            step,
            NOT_A_MODEL,
            f"{step} was handed a `{wrong[0]}` where it takes the model (an nn.Module): the name passed to it holds "
            f"{wrong[1]}.",
            "",
        )
    for cause in KNOWN_FAILURES:
        in_traceback = cause.cause == "capture-pre-autograd-graph-removed" and cause.pattern.search(crash.traceback)
        if cause.pattern.search(text) or in_traceback:
            if cause.cause == "prepare-needs-exported-graph" and step not in _PT2E_STEPS:
                continue
            if cause.cause == "strict-export-unsupported" and step != "export":
                continue
            return failure(step or cause.step, cause.cause, cause.explanation, cause.fix)
    if step is not None:
        return failure(
            step,
            UNRECOGNIZED,
            f"{step} raised an error that is not a known quantization-flow failure; its message and location follow.",
            "",
        )
    return None


def failed_flow_steps(facts: Facts) -> list[tuple[CrashInfo, FlowFailure]]:
    """Every crash that is a quantization-flow failure, with its cause: the script's first crash, the run's, then
    every other statement of the script that raised (keep-going). Empty without flow facts (the installed torchao
    version is one of them)."""
    if facts.flow is None:
        return []
    crashes = [facts.target.load_crash, facts.trace.crash if facts.trace else None]
    crashes += [c for c in facts.target.script_errors if c is not facts.target.load_crash]
    found: list[tuple[CrashInfo, FlowFailure]] = []
    for crash in crashes:
        failure = diagnose(crash, facts.environment.torch_version, facts.flow.torchao_version)
        if crash is None or failure is None:
            continue
        if any(same_crash(crash, c) and crash.line == c.line for c, _ in found):
            continue
        found.append((crash, failure))
    return found


def failed_flow_step(facts: Facts) -> tuple[CrashInfo, FlowFailure] | None:
    """The first flow failure to report and the crash behind it (see failed_flow_steps)."""
    found = failed_flow_steps(facts)
    return found[0] if found else None


def flow_failure(facts: Facts) -> FlowFailure | None:
    found = failed_flow_step(facts)
    return found[1] if found else None


def _failed_with(cause_id: str) -> Callable[[CrashInfo, Facts], bool]:
    def matches(crash: CrashInfo, facts: Facts) -> bool:
        return any(
            failure.cause == cause_id and same_crash(crash, failed) and (crash.line == failed.line or crash is failed)
            for failed, failure in failed_flow_steps(facts)
        )

    return matches


# Every cause ``diagnose`` can name, declared as a flow-step Cause for the rule that reports flow failures to own.
FLOW_CAUSES = tuple(
    Cause(cause_id, _failed_with(cause_id), flow_step=True)
    for cause_id in (
        FUSION_FAILED,
        NO_FUSER,
        PT2E_MOVED,
        TORCHAO_API_MOVED,
        NO_SUCH_API,
        *(known.cause for known in KNOWN_FAILURES),
        NOT_A_MODEL,
        UNRECOGNIZED,
    )
)
