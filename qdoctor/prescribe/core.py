"""Verified prescriptions: apply each finding's fix to a copy, measure it like the subject, and "fix all".

A finding whose rule has a transform (qdoctor.prescribe.fixes) gets ``finding.verified``: the model rebuilt from a copy of the
float baseline the way the script evidently meant to (its engine and qconfig family, its defects), then with the one
fix, timed with qdoctor.gather.timing and compared with the float baseline by SQNR. "Fix all" applies every
applicable fix together and is measured against the float baseline. The user's objects are never touched (every
model here is a deep copy) and torch's global state is restored after each counterfactual.

Cheap by design: the subject's own measurement is reused as "before", each distinct counterfactual is built and
measured once (cached by its recipe), counterfactuals are timed for a short budget, and calibration uses a few
batches.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qdoctor.diagnose.findings import Finding
from qdoctor.facts import Facts, Timing
from qdoctor.introspect.state import preserved_torch_state, quiet
from qdoctor.load.target import LoadedTarget
from qdoctor.prescribe.fixes import (
    DYNAMIC,
    EAGER,
    FX,
    OTHER,
    QAT,
    CannotApply,
    Fix,
    FixContext,
    Recipe,
    SubjectFixError,
    all_transforms,
)

VERIFY_BENCH_TIME = 0.15  # seconds of timed runs per counterfactual (the subject gets the full --bench-time)
CALIBRATION_BATCHES = 3  # stand-in batches when the script has no calibration_data(): the example + 2 random
MAX_CALIBRATION_BATCHES = 16  # batches taken from calibration_data() at most

Progress = Callable[[str], None]


@dataclass
class PrescribeOptions:
    bench: bool = True  # time the counterfactuals (else SQNR only)
    bench_time: float = VERIFY_BENCH_TIME
    save_fixed: str | None = None  # write the "fix all" model here


@dataclass
class Outcome:
    """One measured model: the subject as gathered, or a counterfactual."""

    timing: Timing | None = None
    sqnr_db: float | None = None
    error: str | None = None  # building or running it raised
    cannot: bool = False  # the fix cannot be applied to this model (error says why)
    steps: list[str] = field(default_factory=list)
    code: str = ""
    engine: str = ""
    threads: int = 0
    model: nn.Module | None = None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}"


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _db(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# ------------------------------------------------------------------------------------------ reading the subject


def detect_flow(subject: nn.Module) -> str:
    """Which quantization flow made the subject: EAGER, FX, DYNAMIC, QAT (fake-quant) or OTHER (PT2E)."""
    from qdoctor.introspect.kinds import classify

    inside_dynamic = {
        id(child)
        for m in subject.modules()
        if classify(m) == "dynamic_quantized"
        for child in m.modules()
        if child is not m
    }  # a dynamic Linear holds its packed weights in a static-quantized child module
    kinds = {classify(m) for m in subject.modules() if id(m) not in inside_dynamic}
    if kinds & {"fake_quant", "qat"}:
        return QAT
    if isinstance(subject, torch.fx.GraphModule):
        targets = " ".join(str(n.target) for n in subject.graph.nodes)
        return OTHER if "quantized_decomposed" in targets else FX
    if "dynamic_quantized" in kinds and not kinds & {"quantized", "observer"}:
        return DYNAMIC
    return EAGER


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


def _float_for_rebuild(float_baseline: nn.Module) -> nn.Module:
    """A copy without the qconfig the script set: the recipe chooses the qconfig. ``qconfig = None`` (a layer the
    user kept float on purpose) is kept."""
    model = copy.deepcopy(float_baseline)
    for module in model.modules():
        if getattr(module, "qconfig", None) is not None:
            del module.qconfig
    return model.eval()


def _fused_in_subject(subject: nn.Module, float_model: nn.Module, groups: list[list[str]]) -> tuple[bool, bool]:
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


# ------------------------------------------------------------------------------------------ the stage


class _Stage:
    def __init__(self, loaded: LoadedTarget, facts: Facts, options: PrescribeOptions, progress: Progress) -> None:
        from qdoctor.facts.data import recommended_engine
        from qdoctor.prescribe.quantize import fusion_plan

        self.loaded, self.facts, self.options, self.progress = loaded, facts, options, progress
        self.inputs = loaded.inputs
        self.flow = detect_flow(loaded.subject)
        engine = loaded.user_engine or facts.environment.quantized_engine
        bench = facts.benchmark
        measured = bench.subject if bench and bench.subject else (bench.float_baseline if bench else None)
        self.measured_threads = measured.num_threads if measured else torch.get_num_threads()
        trace = facts.trace
        self.subject_crashed = (trace is not None and trace.crash is not None) or bool(bench and bench.subject_error)
        self.subject_crash = facts.crash
        self.rebuild = loaded.float_baseline is not None and self.flow in (EAGER, FX, DYNAMIC)
        if loaded.float_baseline is None:
            self.no_rebuild_reason = (
                "no float baseline in the target to rebuild from (define `float_model` or `build_float_model()`)"
            )
        elif self.flow == QAT:
            self.no_rebuild_reason = (
                "a QAT model is fixed on a copy of itself: a rebuild from float would lose its training"
            )
        else:
            self.no_rebuild_reason = f"qdoctor cannot rebuild a {self.flow} model from its float baseline"
        self.float_model = _float_for_rebuild(loaded.float_baseline) if loaded.float_baseline is not None else None
        self.batches, self.calibration, self.calibration_code = self._calibration()
        groups: list[list[str]] = []
        relu_fused = bn_folded = True
        if self.rebuild and self.flow == EAGER and self.float_model is not None:
            groups = fusion_plan(self.float_model, self.inputs)
            relu_fused, bn_folded = _fused_in_subject(loaded.subject, self.float_model, groups)
        self.groups = groups
        dynamic_types = tuple(
            sorted({m.type for m in facts.modules or [] if m.kind == "dynamic_quantized" and m.is_leaf})
        )
        self.base = Recipe(
            flow=self.flow if self.flow in (EAGER, FX, DYNAMIC) else EAGER,
            engine=engine,
            qconfig_engine=qconfig_engine_of(facts, engine),
            fuse_activations=relu_fused,
            fold_bn=bn_folded,
            dynamic_types=dynamic_types,
        )
        self.ctx = FixContext(
            facts=facts,
            flow=self.flow,
            base=self.base,
            recommended_engine=recommended_engine(facts.environment),
            calibration=self.calibration,
            has_float_baseline=loaded.float_baseline is not None,
            fusion_groups=groups,
            measured_threads=self.measured_threads,
        )
        self._reference: Any = None
        self._reference_done = False
        self._cache: dict[Any, Outcome] = {}
        self._float_timings: dict[int, Timing | None] = {}

    # ---- calibration data, and the code that says which

    def _calibration(self) -> tuple[list[tuple[Any, ...]], str, Callable[[str], str]]:
        from qdoctor.prescribe.quantize import calibration_batches

        loaded = self.loaded
        if loaded.calibration_data is not None:
            try:
                items = []
                for item in loaded.calibration_data():
                    items.append(item)
                    if len(items) > MAX_CALIBRATION_BATCHES:
                        break
            except Exception as exc:
                items = []
                failed = f"calibration_data() raised {_reason(exc)}; "
            else:
                failed = ""
            if items:
                truncated = len(items) > MAX_CALIBRATION_BATCHES
                items = items[:MAX_CALIBRATION_BATCHES]
                batches, _ = calibration_batches(lambda: items, self.inputs)
                described = (
                    f"the first {len(batches)} batches of calibration_data() from the script"
                    if truncated
                    else f"calibration_data() from the script ({len(batches)} batches)"
                )
                expr = (
                    "calibration_data()" if callable(loaded.namespace.get("calibration_data")) else "calibration_data"
                )
                tuples = isinstance(items[0], (tuple, list))
                call = "(*batch)" if tuples else "(batch)"
                head = f"itertools.islice({expr}, {MAX_CALIBRATION_BATCHES})" if truncated else expr

                def code(work: str) -> str:
                    imports = "import itertools\n" if truncated else ""
                    return f"{imports}with torch.no_grad():\n    for batch in {head}:\n        {work}{call}"

                return batches, described, code
        else:
            failed = ""
        batches, described = calibration_batches(None, self.inputs, CALIBRATION_BATCHES)
        return batches, failed + described, self._stand_in_code

    def _inputs_expr(self) -> str | None:
        """The script's name for the example inputs, if the fix-all snippet can use it where it goes."""
        target = self.loaded.target
        name = target.inputs_name
        if not name or not target.script_text:
            return name
        blocks = quantization_lines(target.script_text)
        if name.endswith("()") or not blocks:
            return name
        assigned = re.compile(rf"^\s*{re.escape(name)}\s*(:[^=]*)?=[^=]")
        first = next((i for i, line in enumerate(target.script_text.splitlines(), 1) if assigned.match(line)), None)
        return name if first is not None and first < blocks[0][0] else None  # defined after the quantization steps

    def _stand_in_code(self, work: str) -> str:
        example = next(n for n in ("example", "qdoctor_example") if n not in self.loaded.namespace)
        extra = CALIBRATION_BATCHES - 1
        tensors = [t for t in self.inputs if isinstance(t, torch.Tensor)]
        single = len(self.inputs) == 1 and len(tensors) == 1
        name = self._inputs_expr()
        lines = [
            "# calibrate: qdoctor used the example inputs plus random tensors like them; real data calibrates better"
        ]
        if name and single and not name.endswith("()"):
            x = name
        elif single:
            x = example
            lines.append(f"{example} = torch.randn{tuple(tensors[0].shape)}  # your real input here")
        else:
            x = None
            if name:
                lines.append(f"{example} = {name}")
                lines.append(f"{example} = tuple({example}) if isinstance({example}, (tuple, list)) else ({example},)")
            else:
                shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
                lines.append(f"{example} = tuple(torch.randn(s) for s in [{shapes}])  # your real inputs here")
        floating = bool(tensors) and all(t.is_floating_point() for t in tensors)
        batches = next(
            n for n in ("calibration_batches", "qdoctor_calibration_batches") if n not in self.loaded.namespace
        )
        if x is not None:
            like = f"torch.randn_like({x}) * {x}.std() + {x}.mean()" if floating else x
            lines += [
                f"{batches} = [{x}] + [{like} for _ in range({extra})]",
                "with torch.no_grad():",
                f"    for batch in {batches}:",
                f"        {work}(batch)",
            ]
        else:
            like = f"tuple(torch.randn_like(t) * t.std() + t.mean() for t in {example})" if floating else example
            lines += [
                f"{batches} = [{example}] + [{like} for _ in range({extra})]",
                "with torch.no_grad():",
                f"    for batch in {batches}:",
                f"        {work}(*batch)",
            ]
        return "\n".join(lines)

    # ---- names for the generated code

    def _names(self) -> Any:
        from qdoctor.prescribe.quantize import CodeNames

        target = self.loaded.target
        taken = set(self.loaded.namespace)
        work = next(n for n in ("qmodel", "qdoctor_model", "qdoctor_qmodel") if n not in taken)
        subject = target.subject_name
        quantized = "quantized_model" if subject.endswith("()") else subject
        inputs = self._inputs_expr()
        single = len(self.inputs) == 1 and isinstance(self.inputs[0], torch.Tensor)
        if inputs and single and not inputs.endswith("()"):
            example_inputs = f"({inputs},)"
        elif inputs:
            example_inputs = f"tuple({inputs})"
        else:
            shapes = ", ".join(f"torch.randn{tuple(t.shape)}" for t in self.inputs if isinstance(t, torch.Tensor))
            example_inputs = f"({shapes},)"
        return CodeNames(
            float_model=target.float_name or "float_model",
            quantized_model=quantized,
            model=work,
            prepared=work,
            example_inputs=example_inputs,
            calibration=self.calibration_code(work),
        )

    def _header(self, direct: bool) -> str:
        target = self.loaded.target
        script = Path(target.file).name if target.file else target.spec
        lines = []
        if direct:
            lines.append(f"# qdoctor fix: in {script}, after `{target.subject_name}` is built, add:")
        else:
            blocks = quantization_lines(target.script_text)
            where = f" (lines {', '.join(f'{a}-{b}' if b > a else str(a) for a, b in blocks)})" if blocks else ""
            lines.append(f"# qdoctor fix: in {script}, replace the quantization steps{where} with:")
            if target.float_derived:
                lines.append(f"# `{target.float_name}` must be the float model: do not prepare it in place before this")
        if target.subject_name.endswith("()"):
            lines.append(f"# ({target.subject_name} should return quantized_model)")
        return "\n".join(lines)

    # ---- measuring

    def reference(self) -> Any:
        if not self._reference_done:
            self._reference_done = True
            if self.float_model is not None:
                from qdoctor.gather import numerics

                try:
                    self._reference = numerics.outputs(self.float_model, self.inputs)
                except Exception:
                    self._reference = None
        return self._reference

    def subject_outcome(self) -> Outcome:
        facts = self.facts
        if self.subject_crashed:
            crash = self.subject_crash
            return Outcome(error=f"{crash.type}: {crash.message.splitlines()[0][:200]}" if crash else "it raised")
        bench = facts.benchmark
        return Outcome(
            timing=bench.subject if bench else None,
            sqnr_db=facts.numerics.sqnr_db if facts.numerics else None,
            engine=self.base.engine,
            threads=self.measured_threads,
        )

    def _measure(self, make: Callable[[], tuple[nn.Module, list[str], str]], engine: str, threads: int) -> Outcome:
        from qdoctor.gather import numerics, timing
        from qdoctor.introspect.state import quantized_engine

        outcome = Outcome(engine=engine, threads=threads)
        with preserved_torch_state(), quantized_engine(engine), quiet():
            torch.set_num_threads(threads)
            try:
                model, outcome.steps, outcome.code = make()
            except SubjectFixError as exc:
                outcome.error, outcome.cannot = str(exc), True
                return outcome
            except Exception as exc:
                outcome.error = f"building the fixed copy raised {_reason(exc)}"
                return outcome
            try:
                with torch.no_grad():
                    output = model(*self.inputs)
            except Exception as exc:
                outcome.error = _reason(exc)
                return outcome
            if self.options.save_fixed:
                outcome.model = model  # kept for --save-fixed; otherwise freed once measured
            reference = self.reference()
            if reference is not None:
                outcome.sqnr_db = numerics.sqnr_db(reference, output)
            if self.options.bench:

                def run() -> None:
                    with torch.no_grad():
                        model(*self.inputs)

                outcome.timing = timing.time_callable(run, self.options.bench_time, num_threads=threads)
        return outcome

    def rebuilt(self, recipe: Recipe) -> Outcome:
        if recipe not in self._cache:
            self._cache[recipe] = self._measure(
                lambda: self._build(recipe), recipe.engine, recipe.threads or self.measured_threads
            )
        return self._cache[recipe]

    def _build(self, recipe: Recipe) -> tuple[nn.Module, list[str], str]:
        from qdoctor.prescribe import quantize

        assert self.float_model is not None
        names = self._names()
        if recipe.flow == FX:
            built = quantize.static_fx(
                self.float_model,
                self.inputs,
                recipe.engine,
                self.batches,
                qconfig_engine=recipe.qconfig_engine,
                calibrate_model=recipe.calibrate,
                convert=recipe.convert,
                names=names,
            )
        elif recipe.flow == DYNAMIC:
            by_name = {t.__name__: t for t in quantize.DYNAMIC_TYPES}
            types = [by_name[n] for n in recipe.dynamic_types if n in by_name] or None
            built = quantize.dynamic(self.float_model, recipe.engine, types, names=names)
        else:
            if recipe.fuse_activations and recipe.fold_bn:
                groups = self.groups
            elif recipe.fold_bn:
                groups = quantize.bn_folds(self.float_model, self.groups)
            elif recipe.fuse_activations:
                groups = [g for g in self.groups if not quantize.bn_folds(self.float_model, [g])]
            else:
                groups = []
            built = quantize.static_eager(
                self.float_model,
                self.inputs,
                recipe.engine,
                self.batches,
                groups=groups,
                wrap=recipe.stubs,
                qconfig_engine=recipe.qconfig_engine,
                calibrate_model=recipe.calibrate,
                convert=recipe.convert,
                train=not recipe.eval_mode,
                names=names,
            )
        steps, code = list(built.steps), built.code
        if recipe.threads:
            steps.append(f"{recipe.threads} intra-op thread(s)")
            code = f"torch.set_num_threads({recipe.threads})\n{code}"
        return built.model, steps, f"{self._header(direct=False)}\n{code}"

    def on_subject(self, codes: tuple[str, ...], fixes: dict[str, Fix]) -> Outcome:
        """The subject's copy with the fixes of ``codes`` applied in code order (convert after calibrate...)."""
        key = ("subject", codes)
        if key not in self._cache:
            threads = next(
                (fixes[c].fixed["threads"] for c in codes if "threads" in fixes[c].fixed), self.measured_threads
            )
            subject_name = self.loaded.target.subject_name
            name = "quantized_model" if subject_name.endswith("()") else subject_name

            def make() -> tuple[nn.Module, list[str], str]:
                model = copy.deepcopy(self.loaded.subject)
                steps = []
                for code in codes:
                    fix = fixes[code]
                    assert fix.on_subject is not None
                    model = fix.on_subject(model, self.batches)
                    steps.append(f"{code} on a copy of `{subject_name}`")
                lines = [fixes[c].subject_code.format(subject=name) for c in codes]
                return model, steps, self._header(direct=True) + "\n" + "\n".join(lines)

            self._cache[key] = self._measure(make, self.base.engine, threads)
        return self._cache[key]

    def float_timing(self, threads: int) -> Timing | None:
        """The float baseline's time at ``threads`` (the gathered one when the thread count is the same)."""
        bench = self.facts.benchmark
        if bench is None or self.float_model is None:
            return None
        if threads == self.measured_threads and bench.float_baseline is not None:
            return bench.float_baseline
        if threads not in self._float_timings:
            from qdoctor.gather import timing

            with preserved_torch_state(), quiet():
                torch.set_num_threads(threads)
                try:
                    self._float_timings[threads] = timing.time_model(
                        self.float_model, self.inputs, self.options.bench_time, copy_model=False
                    )
                except Exception:
                    self._float_timings[threads] = None
        return self._float_timings[threads]

    # ---- verification of each fix, and fix all

    def method(self, direct: bool) -> str:
        target = self.loaded.target
        if direct:
            return f"the fix applied to a copy of `{target.subject_name}`"
        return (
            f"rebuilt from a copy of `{target.float_name}` (the float baseline) the way the script did it "
            f"({self.flow} mode, engine '{self.base.engine}', qconfig '{self.base.qconfig_engine}'), then fixed"
        )

    def verified(self, before: Outcome, after: Outcome, fix: Fix, method: str, on_top_of: list[str]) -> dict[str, Any]:
        if after.cannot:
            return {"applied": False, "reason": after.error}
        v: dict[str, Any] = {
            "applied": True,
            "before_ms": _ms(before.timing.median_ms) if before.timing else None,
            "after_ms": _ms(after.timing.median_ms) if after.timing else None,
            "speedup": (
                round(before.timing.median_ms / after.timing.median_ms, 3)
                if before.timing and after.timing and after.timing.median_ms > 0
                else None
            ),
            "before_sqnr_db": _db(before.sqnr_db),
            "after_sqnr_db": _db(after.sqnr_db),
        }
        if before.error:
            v["before_error"] = before.error
        if after.timing:
            v.update(
                after_iqr_ms=_ms(after.timing.iqr_ms), after_runs=after.timing.runs, after_noisy=after.timing.noisy
            )
        v.update(engine=after.engine, threads=after.threads, method=method, steps=after.steps)
        if on_top_of:
            v["on_top_of"] = on_top_of
        v.update(fix.details)
        if after.error:
            v["after_error"] = after.error
            v["reason"] = f"the fixed copy still raises: {after.error}"
        elif after.timing is None:
            v["reason"] = (
                f"timing disabled (--no-bench); SQNR {_sqnr_text(before.sqnr_db)} -> {_sqnr_text(after.sqnr_db)}"
            )
        return v

    def direct_codes(self, fixes: dict[str, Fix]) -> list[str]:
        return [
            c
            for c, f in fixes.items()
            if f.on_subject is not None and ((not self.subject_crashed and f.prefer_subject) or not self.rebuild)
        ]

    def _calibrated(self, direct: bool, codes: tuple[str, ...], fixes: dict[str, Fix]) -> bool:
        """Whether qdoctor's calibration batches went into the fixed model (a direct convert uses the user's)."""
        if direct:
            return any("calibration" in fixes[c].details for c in codes)
        recipe = self.fixed_recipe(self.as_written(fixes), fixes, codes)
        return recipe.calibrate and recipe.flow != DYNAMIC

    def as_written(self, fixes: dict[str, Fix]) -> Recipe:
        """The recipe the script followed: the user's engine and qconfig family, with every finding's defect."""
        fields: dict[str, Any] = {}
        for fix in fixes.values():
            fields.update(fix.as_written)
        return self.base.changed(**fields)

    @staticmethod
    def fixed_recipe(recipe: Recipe, fixes: dict[str, Fix], codes: Any) -> Recipe:
        for code in codes:
            recipe = recipe.changed(**fixes[code].fixed)
        return recipe

    def verify_each(self, fixes: dict[str, Fix]) -> dict[str, dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {}
        direct = self.direct_codes(fixes)
        rebuilt = [c for c in fixes if c not in direct] if self.rebuild else []
        for code in fixes:
            if code not in direct and code not in rebuilt:
                results[code] = {"applied": False, "reason": self.no_rebuild_reason}
        blocking = [c for c in rebuilt if fixes[c].repairs_crash] if self.subject_crashed else []
        runnable = self.fixed_recipe(self.as_written(fixes), fixes, blocking)
        subject = self.subject_outcome()
        for code in rebuilt:
            self.progress(f"verifying the fix for {code}")
            if code in blocking:
                before, after = subject, self.rebuilt(runnable)
                on_top_of = [c for c in blocking if c != code]
            else:
                before = subject if not self.subject_crashed else self.rebuilt(runnable)
                after = self.rebuilt(runnable.changed(**fixes[code].fixed))
                on_top_of = blocking
            results[code] = self.verified(before, after, fixes[code], self.method(direct=False), on_top_of)
        for code in direct:
            self.progress(f"verifying the fix for {code}")
            results[code] = self.verified(subject, self.on_subject((code,), fixes), fixes[code], self.method(True), [])
        return results

    def fix_all(
        self, fixes: dict[str, Fix], results: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, Any], Outcome | None]:
        applied = [c for c in fixes if results.get(c, {}).get("applied")]
        direct = self.direct_codes({c: fixes[c] for c in applied})
        if not applied:
            return {"applied": False, "reason": "no fix could be applied", "fixes": []}, None
        use_direct = not self.rebuild or len(direct) == len(applied)
        codes = tuple(sorted(direct)) if use_direct else tuple(sorted(applied))
        self.progress("verifying all fixes together")
        if use_direct:
            after = self.on_subject(codes, fixes)
        else:
            after = self.rebuilt(self.fixed_recipe(self.as_written(fixes), fixes, codes))
        before = self.subject_outcome()
        float_timing = self.float_timing(after.threads) if after.timing else None
        summary: dict[str, Any] = {
            "applied": after.error is None,
            "fixes": list(codes),
            "headline": headline(before, after, float_timing),
            "before_ms": _ms(before.timing.median_ms) if before.timing else None,
            "before_error": before.error,
            "after_ms": _ms(after.timing.median_ms) if after.timing else None,
            "after_iqr_ms": _ms(after.timing.iqr_ms) if after.timing else None,
            "after_runs": after.timing.runs if after.timing else None,
            "after_noisy": after.timing.noisy if after.timing else None,
            "float_ms": _ms(float_timing.median_ms) if float_timing else None,
            "speedup_vs_float": (
                round(float_timing.median_ms / after.timing.median_ms, 3) if float_timing and after.timing else None
            ),
            "before_sqnr_db": _db(before.sqnr_db),
            "after_sqnr_db": _db(after.sqnr_db),
            "engine": after.engine,
            "threads": after.threads,
            "method": self.method(use_direct),
            "calibration": self.calibration if self._calibrated(use_direct, codes, fixes) else None,
            "steps": after.steps,
            "code": after.code,
        }
        if after.error:
            summary["after_error"] = after.error
        return summary, after


def _sqnr_text(value: float | None) -> str:
    if value is None:
        return "-"
    return "identical" if value == float("inf") else f"{value:.1f} dB"


def headline(before: Outcome, after: Outcome, float_timing: Timing | None) -> str:
    """e.g. "quantized: crashed -> after all fixes 4.9 ms, 6.9x faster than fp32 (34.1 ms), SQNR 35.2 dB"."""
    if before.timing is not None:
        was = f"{before.timing.median_ms:.1f} ms"
    elif before.error:
        was = "crashed"
    else:
        was = "not timed"
    if after.error:
        return f"quantized: {was} -> after all fixes it still raises {after.error}"
    if after.timing is None:
        now = "after all fixes (not timed: --no-bench)"
    else:
        ms = after.timing.median_ms
        now = f"after all fixes {ms:.1f} ms"
        if float_timing is not None and ms > 0:
            ratio = float_timing.median_ms / ms
            speed = f"{ratio:.1f}x faster than" if ratio >= 1 else f"{1 / ratio:.1f}x SLOWER than"
            now += f", {speed} fp32 ({float_timing.median_ms:.1f} ms)"
        elif before.timing is not None and ms > 0:
            now += f" ({before.timing.median_ms / ms:.1f}x faster than before)"
    if after.sqnr_db is not None:
        now += f", SQNR {_sqnr_text(after.sqnr_db)} vs fp32"
    return f"quantized: {was} -> {now}"


# ------------------------------------------------------------------------------------------ saving the fixed model


def save_fixed(model: nn.Module, engine: str, inputs: tuple[Any, ...], path: str, code: str) -> dict[str, Any]:
    """Write the fixed model: TorchScript when it scripts or traces, else its state_dict plus the code to rebuild it.

    Written to a temporary file next to ``path`` and renamed, so a failure leaves no half-written file.
    """
    from qdoctor.introspect.state import quantized_engine

    target = Path(path)
    result: dict[str, Any] = {"path": str(target), "saved": False}
    scripted = None
    how = ""
    with preserved_torch_state(), quantized_engine(engine), quiet(), torch.no_grad():
        for name, make in (
            ("torch.jit.script", lambda: torch.jit.script(model)),
            ("torch.jit.trace", lambda: torch.jit.trace(model, tuple(inputs))),
        ):
            try:
                candidate = make()
                candidate(*inputs)
            except Exception:
                continue
            scripted, how = candidate, name
            break
        fd, tmp = tempfile.mkstemp(
            prefix=".qdoctor-", suffix=".pt", dir=str(target.parent if str(target.parent) else ".")
        )
        os.close(fd)
        try:
            if scripted is not None:
                torch.jit.save(scripted, tmp)
                result.update(
                    format="torchscript",
                    how=how,
                    load=f'torch.backends.quantized.engine = "{engine}"; model = torch.jit.load("{target}")',
                )
            else:
                torch.save({"state_dict": model.state_dict(), "engine": engine, "rebuild_code": code}, tmp)
                result.update(
                    format="state_dict",
                    how="neither torch.jit.script nor torch.jit.trace worked on the fixed model",
                    load=(
                        f'checkpoint = torch.load("{target}"); run checkpoint["rebuild_code"] to build the model, then '
                        'quantized_model.load_state_dict(checkpoint["state_dict"])'
                    ),
                )
            os.replace(tmp, target)
            result["saved"] = True
        except Exception as exc:
            result["error"] = _reason(exc)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return result


# ------------------------------------------------------------------------------------------ entry point


def prescribe(
    loaded: LoadedTarget,
    facts: Facts,
    findings: list[Finding],
    options: PrescribeOptions | None = None,
    progress: Progress = lambda _: None,
) -> dict[str, Any]:
    """Fill ``verified`` on every finding whose rule has a transform; return Report.extras entries ("fix_all",
    "saved_fixed"). Never modifies the user's objects; restores torch's global state."""
    options = options or PrescribeOptions()
    transforms = {t.code: t for t in all_transforms()}
    relevant = [f for f in findings if f.rule in transforms]
    extras: dict[str, Any] = {}
    if not relevant:
        if options.save_fixed:
            extras["saved_fixed"] = {
                "path": options.save_fixed,
                "saved": False,
                "reason": "no finding has an automatic fix: nothing to save",
            }
        return extras
    with preserved_torch_state(), quiet():
        progress("preparing verified fixes")
        try:
            extras["fix_all"], fixed = _verify(loaded, facts, relevant, transforms, options, progress)
        except Exception as exc:
            reason = f"verification failed: {_reason(exc)} (a qdoctor bug: please report it)"
            for finding in relevant:
                finding.verified = {"applied": False, "reason": reason}
            extras["fix_all"], fixed = {"applied": False, "reason": reason, "fixes": []}, None
        if options.save_fixed:
            if fixed is not None and fixed.model is not None:
                progress(f"saving the fixed model to {options.save_fixed}")
                extras["saved_fixed"] = save_fixed(
                    fixed.model, fixed.engine, loaded.inputs, options.save_fixed, fixed.code
                )
            else:
                summary = extras["fix_all"]
                extras["saved_fixed"] = {
                    "path": options.save_fixed,
                    "saved": False,
                    "reason": summary.get("after_error") or summary.get("reason") or "no fixed model",
                }
    return extras


def _verify(
    loaded: LoadedTarget,
    facts: Facts,
    relevant: list[Finding],
    transforms: dict[str, Any],
    options: PrescribeOptions,
    progress: Progress,
) -> tuple[dict[str, Any], Outcome | None]:
    stage = _Stage(loaded, facts, options, progress)
    outcomes: dict[str, Fix | CannotApply] = {}
    for code in sorted({f.rule for f in relevant}):
        first = next(f for f in relevant if f.rule == code)
        outcomes[code] = transforms[code].make(stage.ctx, first)
    fixes = {c: o for c, o in outcomes.items() if isinstance(o, Fix)}
    results = {c: {"applied": False, "reason": o.reason} for c, o in outcomes.items() if isinstance(o, CannotApply)}
    results.update(stage.verify_each(fixes))
    for finding in relevant:
        finding.verified = dict(results[finding.rule])
    summary, fixed = stage.fix_all(fixes, results)
    summary["left_out"] = {c: r.get("reason", "") for c, r in results.items() if c not in summary["fixes"]}
    return summary, fixed
