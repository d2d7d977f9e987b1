"""Where a finding points and which names its fix uses: pure functions of Facts shared by the rules.

A finding names the module a user recognises (the first conv that runs, not the QuantStub's observer) and the user's
own variable names in its fix, so the fix can be pasted into their script.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from qdoctor import facts as F
from qdoctor.facts import Facts, ModuleInfo, SourceLocation, recommended_engine
from qdoctor.facts.graph import LAYOUT_MODULES

# Kinds that hold no compute of their own: a finding prefers to point past them.
_BOOKKEEPING = (F.QUANT_STUB, F.DEQUANT_STUB, F.OBSERVER, F.FAKE_QUANT, F.CONTAINER)


def execution_order(facts: Facts) -> dict[str, int]:
    """Module path -> position of its first call in the traced forward.

    A module that is not a leaf (a fused ConvReLU2d, a QAT ConvBn2d holding its BatchNorm) takes the position of
    the first of its children that ran.
    """
    order: dict[str, int] = {}
    for event in facts.trace.events if facts.trace else []:
        if event.kind != "module":
            continue
        position = len(order)
        path = event.module
        while True:
            order.setdefault(path, position)
            if not path:
                break
            path = path.rpartition(".")[0]
    return order


def first_compute(modules: Iterable[ModuleInfo], facts: Facts) -> ModuleInfo:
    """The first module that computes, in execution order, outermost first (modules that did not run keep their tree
    order, after those that did)."""
    order = execution_order(facts)
    ranked = sorted(modules, key=lambda m: (order.get(m.path, len(order)), m.path.count(".")))
    # a layout module (Dropout, Identity, torch.export's GuardsFn, which runs before anything) computes nothing
    return next((m for m in ranked if m.kind not in _BOOKKEEPING and m.type not in LAYOUT_MODULES), ranked[0])


def observer_owner(facts: Facts, observer: ModuleInfo) -> ModuleInfo:
    """The module an eager observer or fake-quant belongs to: "features.0.activation_post_process" -> "features.0".

    FX observers (``activation_post_process_3`` at the root) belong to no module: they stand for themselves.
    """
    head, _, last = observer.path.rpartition(".")
    if last in ("activation_post_process", "weight_fake_quant"):
        return facts.module(head) or observer
    return observer


def inside_fake_quant(facts: Facts, info: ModuleInfo) -> bool:
    """A fake-quant holds its observer as a child: count the fake-quant, not both."""
    parent = facts.module(info.path.rpartition(".")[0]) if "." in info.path else None
    return parent is not None and parent.kind == F.FAKE_QUANT


def fix_engine(facts: Facts) -> str:
    """The engine a fix names: the fastest one for this CPU, never the one a wrong tutorial suggested."""
    return recommended_engine(facts.environment)


def is_graph_module(facts: Facts) -> bool:
    """The subject is an FX GraphModule (prepare_fx / convert_fx output)."""
    root = facts.module("")
    return root is not None and root.type == "GraphModule"


def subject_label(facts: Facts) -> str:
    """The user's name for the model being checked, as a message names it: ``build_model`` for ``build_model()``."""
    return facts.target.subject_name.removesuffix("()")


def subject_variable(facts: Facts, fallback: str = "quantized_model") -> str:
    """The user's name for the model being checked, usable on the left of an assignment in a fix; ``fallback`` when
    the subject is what a function returns (``build_model()``: assigning to ``build_model`` would replace the
    function) or has no plain name (a saved model's ``torch.jit.load(model.pt)``)."""
    name = facts.target.subject_name
    return name if name.isidentifier() else fallback


_FIRST_ARGUMENT = re.compile(r"\b\w+\(\s*([A-Za-z_][\w.]*)")


def step_argument(facts: Facts, source: SourceLocation | None) -> str:
    """The model a failed flow step took: the first argument of the call on its line (``tq.prepare(fp32)``: fp32),
    else the subject's name."""
    found = _FIRST_ARGUMENT.search(source.code) if source is not None and source.code else None
    return found.group(1) if found else subject_variable(facts)


def script_attribute(facts: Facts, layer_type: str) -> str | None:
    """The attribute the script assigns a layer of ``layer_type`` to (``self.up = nn.ConvTranspose2d(...)``: up),
    read from its text when no module facts name it; None when no single one does."""
    names = set(
        re.findall(rf"self\.(\w+)\s*=\s*(?:[\w.]+\.)?{re.escape(layer_type)}\w*\(", facts.target.script_text or "")
    )
    return names.pop() if len(names) == 1 else None


def float_variable(facts: Facts, fallback: str = "float_model") -> str:
    """The user's name for the float model (what fuse_modules/prepare take), or ``fallback`` when it is what a
    function returns (``build_float_model()``) or there is none."""
    name = facts.target.float_name or ""
    return name if name.isidentifier() else fallback


def float_path(facts: Facts, path: str) -> str:
    """The same module's path in the float model, when the quantized model wraps it (QuantWrapper's ``module.``)."""
    if facts.float_modules is None:
        return path
    known = {m.path for m in facts.float_modules}
    candidate = path
    while candidate and candidate not in known:
        candidate = candidate.partition(".")[2]
    return candidate or path


def script_line(facts: Facts, pattern: str | re.Pattern[str], *, last: bool = False) -> SourceLocation | None:
    """The first line of the user's script whose code (comments skipped) matches ``pattern``; with ``last``, the
    last one: the assignment or call in force once the script has run."""
    text, file = facts.target.script_text, facts.target.file
    if not text or not file:
        return None
    regex = re.compile(pattern)
    found = None
    for number, line in enumerate(text.splitlines(), start=1):
        if regex.search(line.split("#", 1)[0]):
            found = SourceLocation(file, number, line.strip())
            if not last:
                break
    return found
