"""Reading the recipe the script followed: the qconfig family it named, what it fused (and the fusion plan traced on
the float baseline), and which lines of the script hold its quantization steps (the lines the fix-all snippet
replaces). Which flow made the subject and which flow rebuilds it is qdoctor.flows' answer."""

from __future__ import annotations

import copy
import re
from typing import Any

from torch import nn

from qdoctor.diagnose.fusion import executed_layers, fusion_groups
from qdoctor.facts import Facts


def fusion_plan(float_model: nn.Module, inputs: tuple[Any, ...]) -> list[list[str]]:
    """fuse_modules groups for a float model, found from one traced forward pass (see qdoctor.diagnose.fusion)."""
    from qdoctor.gather.trace import trace_model

    trace = trace_model(float_model, inputs, None)
    if trace.crash is not None:
        return []
    return fusion_groups(executed_layers(trace.events))


_QCONFIG_CALL = re.compile(r"get_default_qconfig(?:_mapping)?\(\s*['\"](\w+)['\"]")


def qconfig_engine_of(facts: Facts, engine: str) -> str:
    """The engine whose default qconfig matches the user's (the qconfig family), named as the script names it."""
    infos = [m.qconfig for m in (facts.modules or []) + (facts.float_modules or []) if m.qconfig is not None]
    family = next((i.backend_family for i in infos if i.backend_family), None)
    if family is None:
        schemes = [m.weight_qscheme for m in facts.modules or [] if m.kind == "quantized" and m.weight_qscheme]
        if schemes and all("per_tensor" in s for s in schemes):
            family = "qnnpack"  # a converted model keeps no qconfig; per-tensor weights are qnnpack's choice
    if family is None:
        return engine
    members = ("x86", "fbgemm") if family == "x86/fbgemm" else (family,)
    named = [n for n in _QCONFIG_CALL.findall(facts.target.script_text) if n in members]
    if named:
        return named[0]
    return engine if engine in members else members[0]


def float_for_rebuild(float_baseline: nn.Module) -> nn.Module:
    """A copy without the qconfig the script set: the recipe chooses the qconfig. ``qconfig = None`` (a layer the
    user kept float on purpose) is kept."""
    model = copy.deepcopy(float_baseline)
    for module in model.modules():
        if getattr(module, "qconfig", None) is not None:
            del module.qconfig
    return model.eval()


def fused_in_subject(subject: nn.Module, float_model: nn.Module, groups: list[list[str]]) -> tuple[bool, bool]:
    """(ReLUs fused, BatchNorms folded) in the subject: fuse_modules leaves Identity where a follower was."""
    float_modules = dict(float_model.named_modules())
    subject_modules = list(subject.named_modules())

    def identity_at(path: str) -> bool:
        for name, module in subject_modules:
            if name == path or name.endswith("." + path):
                return isinstance(module, nn.Identity)
        return False

    relu = bn = False
    for group in groups:
        for path in group[1:]:
            if not identity_at(path):
                continue
            if isinstance(float_modules.get(path), nn.modules.batchnorm._BatchNorm):
                bn = True
            else:
                relu = True
    return relu, bn


_QUANTIZATION_CALL = re.compile(
    r"\.qconfig\s*=|\bget_default_q(at_)?config(_mapping)?\s*\(|\bQConfig(Mapping)?\s*\(|quantized\.engine\s*="
    r"|\b(prepare|prepare_qat|prepare_fx|prepare_qat_fx|convert|convert_fx|fuse_modules|quantize_dynamic|QuantWrapper)"
    r"\s*\("
)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def quantization_lines(script: str) -> list[tuple[int, int]]:
    """Blocks of lines (first, last) holding the script's quantization steps: the lines the fix-all snippet
    replaces. Two steps join one block when only blank lines, comments or a calibration loop (a ``with``/``for``
    statement and its body) separate them."""
    lines = script.splitlines()
    blocks: list[tuple[int, int]] = []
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith(("#", "import ", "from ")) or not _QUANTIZATION_CALL.search(line):
            continue
        base = _indent(line)

        def filler(text: str, base: int = base) -> bool:
            rest = text.strip()
            return (
                not rest
                or rest.startswith("#")
                or _indent(text) > base
                or (_indent(text) == base and rest.startswith(("with ", "for ")))
            )

        if blocks and all(filler(lines[k - 1]) for k in range(blocks[-1][1] + 1, n)):
            blocks[-1] = (blocks[-1][0], n)
        else:
            blocks.append((n, n))
    return blocks
