"""QD009 training-mode: a quantized model run in train mode (Dropout active, BatchNorm on batch statistics), or
BatchNorm left unfolded in float between int8 convolutions."""

from __future__ import annotations

import re
from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose import crash_causes as crashes
from qdoctor.diagnose import static_steps as static
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import float_variable, script_line, step_argument, subject_variable
from qdoctor.diagnose.registry import from_text, rule
from qdoctor.facts import Facts, ModuleInfo, TraceEvent
from qdoctor.facts import report as R

# Float layers whose output depends on module.training.
_MODE_DEPENDENT = ("BatchNorm", "Dropout", "AlphaDropout")
# QAT layers with a BatchNorm inside (ConvBn2d, ConvBnReLU2d, LinearBn1d): they update and use batch statistics.
_QAT_WITH_BN = "Bn"
# Functional dropout called in a forward(): F.dropout(x, training=self.training) and friends.
_FUNCTIONAL_DROPOUT = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
_STUB_KINDS = (F.QUANT_STUB, F.DEQUANT_STUB)
# Where .eval() belongs when the modules' own creation lines are unknown: before convert(), or instead of .train().
_CONVERT_CALL = re.compile(r"\bconvert(?:_fx)?\s*\(")
_TRAIN_CALL = re.compile(r"\.train\s*\(")


def _mode_dependent(m: ModuleInfo) -> bool:
    if m.kind == F.FLOAT:
        return any(key in m.type for key in _MODE_DEPENDENT)
    return m.kind == F.QAT and _QAT_WITH_BN in m.type


@rule(
    "QD009",
    "training-mode",
    Severity.WARNING,
    "quantized model run in train mode (Dropout active, BatchNorm on batch statistics) or float BatchNorm left "
    "between int8 convolutions",
    needs=("modules",),
    explains_slowdown=True,
    owns=(crashes.FUSION_MODE, crashes.DROPOUT_IN_TRAIN_MODE),
)
def training_mode(facts: Facts) -> Iterator[Finding]:
    yield from _mode_refused(facts)
    in_train = list(_train_mode(facts))
    yield from in_train
    if not in_train:
        yield from _dropout_crash(facts)
    yield from _float_batchnorm(facts)


def _dropout_crash(facts: Facts) -> Iterator[Finding]:
    """A Dropout in train mode raised on an int8 tensor, and the module facts did not show which one."""
    for crash in crashes.distinct_crashes(facts):
        known = crashes.classify(crash, facts)
        if known is None or known.cause != crashes.DROPOUT_IN_TRAIN_MODE:
            continue
        subject = subject_variable(facts)
        yield training_mode.finding(
            f"a Dropout ran in train mode on an int8 tensor and raised ({crashes.short_message(crash, 120)}): "
            "the model was run without .eval(). In eval mode Dropout is the identity and takes int8 tensors. "
            + crashes.sites_text(crash, facts),
            module=crash.module,
            source=crashes.user_line(crash, facts) or crashes.crash_source(crash, facts),
            evidence={"crash": crashes.short_message(crash), **crashes.site_evidence(crash, facts)},
            fix=f"{subject}.eval()  # before convert() and before every inference run",
            severity=Severity.ERROR,
        )


def _mode_refused(facts: Facts) -> Iterator[Finding]:
    """A quantization step refused the model's mode: "Fusion only for eval!" from fuse_modules or prepare_fx on a
    model in train mode, prepare_qat on a model in eval mode."""
    for crash in crashes.distinct_crashes(facts):
        known = crashes.mode_error(crash)
        if known is None:
            continue
        explanation, fix = known
        source = crashes.user_line(crash, facts) or crashes.crash_source(crash, facts)
        model = step_argument(facts, source)
        where = f" at line {source.line} (`{source.code}`)" if source and source.code else ""
        yield training_mode.finding(
            f"the script raised {crashes.short_message(crash, 120)}{where}: {explanation}.",
            module=None,
            source=source,
            evidence={"crash": crashes.short_message(crash), "phase": crash.phase},
            fix=fix.format(model=model),
            severity=Severity.ERROR,
            # the refused fusion leaves the modules unfused: QD004 on them is this finding's consequence
            leads_to=("QD004",) if crashes.fusion_refused(crash) else (),
        )


def _calibrated_in_train_mode(facts: Facts, in_train: bool) -> list[ModuleInfo]:
    """int8 layers converted from BatchNorm or Dropout in a model whose root is still in train mode. convert()
    creates every int8 module in train mode whatever the model's mode, so only the root tells: the model was prepared
    and calibrated without .eval(), with its BatchNorm on batch statistics and its Dropout active."""
    if not in_train:
        return []
    return [
        m
        for m in facts.modules or []
        if m.path and m.kind == F.QUANTIZED and any(key in m.type for key in _MODE_DEPENDENT)
    ]


def _calibration_effects(calibrated: list[ModuleInfo]) -> str:
    names = ", ".join(f"`{m.path}` ({m.type})" for m in calibrated[:4])
    effects = []
    if any("BatchNorm" in m.type for m in calibrated):
        effects.append(
            "each calibration batch overwrote BatchNorm's running statistics and the observers recorded activations "
            "normalized with batch statistics"
        )
    if any("Dropout" in m.type for m in calibrated):
        effects.append(
            "Dropout zeroed random activations and scaled the rest by 1/(1-p) while the observers recorded their "
            "ranges, so the scales are too wide"
        )
    return f"It was calibrated in train mode ({names}): {'; '.join(effects)}."


def _train_mode(facts: Facts) -> Iterator[Finding]:
    root = facts.module("")
    in_train = root is not None and root.training
    affected = [m for m in facts.modules or [] if m.path and m.training and _mode_dependent(m)]
    calibrated = _calibrated_in_train_mode(facts, in_train)
    dropout_calls: list[TraceEvent] = []
    if facts.trace is not None:
        for event in facts.trace.events:
            owner = facts.module(event.module)
            if (
                event.kind == "function"
                and event.name.rsplit(".", 1)[-1] in _FUNCTIONAL_DROPOUT
                and owner is not None
                and owner.training
            ):
                dropout_calls.append(event)
    if not affected and not dropout_calls and not calibrated:
        return
    subject = subject_variable(facts)
    names = [f"`{m.path}` ({m.type})" for m in affected[:4]]
    names += [f"F.{e.name.rsplit('.', 1)[-1]} at line {e.source.line}" for e in dropout_calls[:2] if e.source]
    dropout = any("Dropout" in m.type for m in affected) or bool(dropout_calls)
    batchnorm = any("BatchNorm" in m.type or _QAT_WITH_BN in m.type for m in affected)
    effects = []
    if dropout:
        effects.append("Dropout zeroes random activations, so two runs on the same input differ")
    if batchnorm:
        effects.append(
            "BatchNorm normalizes with the statistics of each batch (garbage at batch 1) and overwrites its running statistics"
        )
    message = "the model is in train mode" if in_train else "part of the model is in train mode"
    if names:
        message += (
            f": {', '.join(names)} "
            + ("behaves" if len(names) == 1 else "behave")
            + f" differently than in eval mode. {'; '.join(effects)}."
        )
    else:
        message += "."
    if calibrated:
        message += " " + _calibration_effects(calibrated)
    first = affected[0] if affected else (calibrated[0] if calibrated else None)
    qat = bool(facts.modules_of_kind(F.QAT))  # still a QAT model: it needs convert() too
    fix = (
        f"{subject}.eval()  # before convert() and before every inference run; .train() only while training\n"
        if not qat
        else f"{subject}.eval()\n{subject} = torch.ao.quantization.convert({subject})  # convert after eval()\n"
    )
    if calibrated:
        fix += "# call .eval() on the float model before prepare(), then calibrate and convert again\n"
    yield training_mode.finding(
        message,
        module=first.path if first else dropout_calls[0].module,
        source=(first.source if first else dropout_calls[0].source)
        or script_line(facts, _CONVERT_CALL)
        or script_line(facts, _TRAIN_CALL),
        evidence={
            "root_training": in_train,
            "train_mode_layers": [m.path for m in affected[:8]],
            "calibrated_in_train_mode": [m.path for m in calibrated[:8]],
            "functional_dropout_lines": [e.source.line for e in dropout_calls if e.source][:4],
        },
        fix=fix.rstrip("\n"),
    )


def _float_batchnorm(facts: Facts) -> Iterator[Finding]:
    """A float BatchNorm running right after an int8 convolution: it was not folded into the conv."""
    if facts.trace is None:
        return
    events = [e for e in facts.trace.events if e.kind == "module"]
    for i, event in enumerate(events):
        info = facts.module(event.module)
        if info is None or info.kind != F.FLOAT or "BatchNorm" not in info.type or event.any_input_quantized:
            continue
        before = _neighbour(facts, events, i, -1)
        if before is None or "Conv" not in before.type or before.kind != F.QUANTIZED:
            continue
        after = _neighbour(facts, events, i, +1)
        group = [before.path, info.path]
        if after is not None and after.type in ("ReLU", "ReLU6") and after.kind in (F.FLOAT, F.QUANTIZED):
            group.append(after.path)
        stubs = [e.module for e in events[max(0, i - 2) : i + 3] if _kind(facts, e.module) in _STUB_KINDS]
        subject = float_variable(facts)
        yield training_mode.finding(
            f"`{info.path}` ({info.type}) runs in float between int8 layers (after `{before.path}`, "
            f"{before.type}): it was not folded into the conv, so every call pays a dequantize, a float "
            "BatchNorm and a quantize. In eval mode BatchNorm folds into the conv's weights for free.",
            module=info.path,
            source=info.source,
            evidence={"follows": before.path, "float_input": True, "stubs_around_it": stubs},
            fix=(
                f"{subject}.eval()\n"
                "# fusing in eval mode folds the BatchNorm into the conv's weights:\n"
                f"torch.ao.quantization.fuse_modules(\n    {subject}, [{group!r}], inplace=True\n)\n"
                f"# then drop `{info.path}.qconfig = None` and the DeQuantStub/QuantStub around it, and prepare,\n"
                "# calibrate and convert again"
            ).replace("'", '"'),
        )


def _kind(facts: Facts, path: str) -> str | None:
    info = facts.module(path)
    return info.kind if info is not None else None


def _neighbour(facts: Facts, events: list[TraceEvent], i: int, step: int) -> ModuleInfo | None:
    """The nearest module before (step -1) or after (+1) events[i] that computes (stubs and observers skipped)."""
    j = i + step
    while 0 <= j < len(events):
        info = facts.module(events[j].module)
        if info is not None and info.kind not in _STUB_KINDS + (F.OBSERVER, F.FAKE_QUANT) and info.type != "Identity":
            return info
        j += step
    return None


_NEEDS_EVAL = ("fuse_modules", "fuse_fx", "prepare_fx", "prepare")
_NEEDS_TRAIN = ("fuse_modules_qat", "prepare_qat", "prepare_qat_fx")


def _left_in_train_mode(facts: Facts, step: R.StaticStep, mode: str | None) -> bool:
    """Put in train mode before ``step``, or built (train mode) with no .eval() anywhere before it in the text: a
    model that went through a helper under another name (``load_model()`` calling ``.eval()``) is not flagged."""
    if mode is not None:
        return mode == R.TRAIN
    return not static.before(facts, step, R.EVAL)


@from_text("QD009")
def wrong_mode_in_text(facts: Facts) -> Iterator[Finding]:
    """The report's text fuses or prepares a model in the wrong mode: fuse_modules / prepare_fx in train mode (the
    mode a model is built in), prepare_qat in eval mode."""
    for step in static.steps(facts, R.FUSE, R.PREPARE):
        if step.detail not in _NEEDS_EVAL + _NEEDS_TRAIN or not static.unverified(step, facts):
            continue
        if step.model == "self" or (step.model or "").startswith("self."):
            continue  # inside the model's own fuse_model(): the mode is the caller's
        modes = [m for m in static.before(facts, step, R.EVAL, R.TRAIN) if m.model == step.model]
        mode = modes[-1].kind if modes else None
        if step.detail in _NEEDS_TRAIN and mode == R.EVAL:
            problem = (
                f"the model was put in eval mode at line {modes[-1].line}; QAT prepares and trains it in train mode"
            )
            fix = f"{step.model}.train()\n{step.code}"
        elif step.detail in _NEEDS_EVAL and step.detail != "prepare" and _left_in_train_mode(facts, step, mode):
            told = f"put in train mode at line {modes[-1].line}" if modes else "never put in eval mode before"
            problem = (
                f'the model was {told}: {step.detail} folds BatchNorm into the conv only in eval mode ("Fusion '
                'only for eval!")'
            )
            fix = f"{step.model}.eval()\n{step.code}"
        else:
            continue
        yield training_mode.finding(
            f"`{step.code}` (line {step.line}): {problem} (static: read, not run).",
            source=static.where(step, facts),
            evidence=static.evidence(step, mode=mode or "train (as built)"),
            fix=fix,
            severity=Severity.WARNING,
        )
        return  # the first wrong mode is the finding; the next steps follow from it
