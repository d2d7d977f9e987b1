"""Verified prescriptions: apply each finding's fix to a copy, measure it like the subject, and "fix all".

A finding whose rule has a transform (qdoctor.prescribe.fixes) gets ``finding.verified``: the model rebuilt from a
copy of the float baseline the way the script evidently meant to (its engine and qconfig family, its defects), then
with the one fix, and compared with the float baseline by SQNR. The counterfactuals, the subject and the float
baseline are then timed together in interleaved rounds (qdoctor.gather.rounds), so each fix's effect is a paired
ratio with its interval, judged only when the interval clears 1.0. "Fix all" applies
every applicable fix together and is measured against the float baseline. The user's objects are never touched
(every model here is a deep copy) and torch's global state is restored after each counterfactual.

Cheap by design: each distinct counterfactual is built once (cached by its recipe), all of them are timed in one
session for a short budget each, and calibration uses a few batches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding
from qdoctor.facts import SQNR_FLOOR_DB, Facts, Ratio, Timing, recommended_engine
from qdoctor.facts.location import exception_line, first_line
from qdoctor.gather import numerics, timing
from qdoctor.gather.rounds import Variant
from qdoctor.introspect.kinds import eager_module
from qdoctor.introspect.state import preserved_torch_state, quantized_engine, quiet
from qdoctor.load.target import LoadedTarget
from qdoctor.prescribe import quantize
from qdoctor.prescribe.calibration import calibration_for, skipping_rows_code, without_rows
from qdoctor.prescribe.fixes import DYNAMIC, EAGER, FX, QAT, CannotApply, Fix, FixContext, RebuildPlan, all_transforms
from qdoctor.prescribe.measure import (
    Build,
    Measured,
    effect,
    headline,
    measure,
    paired,
    rounded_db,
    rounded_ms,
    verdict,
)
from qdoctor.prescribe.quantize import fusion_plan
from qdoctor.prescribe.recipe import detect_flow, float_for_rebuild, fused_in_subject, qconfig_engine_of
from qdoctor.prescribe.save import save_fixed
from qdoctor.prescribe.snippet import FixCode

VERIFY_BENCH_TIME = (
    0.15  # seconds of timed runs per model in the verification rounds (the check's benchmark: --bench-time)
)
VERIFY_MIN_ROUNDS = 5  # paired rounds at least, even when a round of every model outlasts the budget
MAX_FALLBACK_STEPS = 5  # the speed/accuracy table keeps at most this many layers in float

Progress = Callable[[str], None]


@dataclass
class PrescribeOptions:
    bench: bool = True  # time the counterfactuals (else SQNR only)
    bench_time: float = VERIFY_BENCH_TIME
    save_fixed: str | None = None  # write the "fix all" model here


class Verification:
    """The counterfactuals of one check: the model rebuilt as the script did it, then with each fix; measured once
    each (cached by recipe)."""

    def __init__(self, loaded: LoadedTarget, facts: Facts, options: PrescribeOptions, progress: Progress) -> None:
        self.loaded, self.facts, self.options, self.progress = loaded, facts, options, progress
        self.inputs = loaded.inputs
        self.flow = detect_flow(loaded.subject)
        engine = loaded.user_engine or facts.environment.quantized_engine
        bench = facts.benchmark
        measured = bench.subject if bench and bench.subject else (bench.float_baseline if bench else None)
        # the thread count the user's model runs with (under contention the measurement may have used fewer)
        if facts.measurement is not None:
            self.measured_threads = facts.measurement.threads_requested
        else:
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
        self.float_model = float_for_rebuild(loaded.float_baseline) if loaded.float_baseline is not None else None
        self.code = FixCode(loaded)
        self.batches, self.calibration, self.calibration_code = calibration_for(loaded, self.code.stand_in_calibration)
        groups: list[list[str]] = []
        relu_fused = bn_folded = True
        if self.rebuild and self.flow == EAGER and self.float_model is not None:
            groups = fusion_plan(self.float_model, self.inputs)
            relu_fused, bn_folded = fused_in_subject(loaded.subject, self.float_model, groups)
        self.groups = groups
        dynamic_types = tuple(
            sorted({m.type for m in facts.modules or [] if m.kind == "dynamic_quantized" and m.is_leaf})
        )
        self.base = RebuildPlan(
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
        self._cache: dict[Any, Measured] = {}
        self._float_timings: dict[int, Timing | None] = {}
        self.extras: dict[str, Any] = {}  # report extras beyond fix-all (the speed/accuracy table)
        self._sessions = 0

    # ---- timing, together

    def _subject_variant(self) -> Variant | None:
        """The subject (a copy: running it may change it), timed beside the fixes as their "before"."""
        bench = self.facts.benchmark
        subject = self.loaded.subject
        if self.subject_crashed or bench is None or bench.subject is None or eager_module(subject) is not subject:
            return None
        # as when it was gathered: the subject itself unless running it changes it (a copy would repack its int8
        # weights for the engine in force now)
        found = self.facts.modules
        stateful = found is None or any(
            m.kind in (F.OBSERVER, F.FAKE_QUANT, F.QAT) or (m.training and m.is_leaf) for m in found
        )
        return Variant("subject", timing.model_run(subject, self.inputs, stateful), threads=self.measured_threads)

    def time_together(self, items: list[Measured]) -> None:
        """Time the built, untimed ``items`` in one session of interleaved rounds, with the subject and the float
        baseline (at each thread count among them), so that every ratio between them is paired."""
        pending: list[Measured] = []
        for item in items:
            if item.run is not None and item.timing is None and all(item is not p for p in pending):
                pending.append(item)
        if not pending:
            return
        self._sessions += 1
        variants = [v for v in [self._subject_variant()] if v is not None]
        if self.float_model is not None:
            for threads in sorted({item.threads for item in pending}):
                float_run = timing.model_run(self.float_model, self.inputs, copy_model=False)
                variants.append(Variant(f"float@{threads}", float_run, threads=threads))
        for index, item in enumerate(pending):
            item.key = f"fix{index}"
            assert item.run is not None
            variants.append(Variant(item.key, item.run, _engine_context(item.engine), threads=item.threads))
        with quiet():
            result = timing.time_models(variants, self.options.bench_time, min_rounds=VERIFY_MIN_ROUNDS)
        for item in pending:
            item.session, item.timing, item.run = result, result.timing(item.key), None
            if item.key in result.errors:
                item.error = f"timing it raised {exception_line(result.errors[item.key], 200)}"

    def subject_effect(self, before: Measured, after: Measured, fix: Fix, method: str, on_top_of: list[str]) -> Any:
        """effect(), with "before" taken from the rounds the fix was timed in when it is the subject."""
        session = after.session
        if before.key == "subject" and session is not None and "subject" in session.per_call:
            ratio = paired(before, after, before_key="subject")
            return effect(before, after, fix, method, on_top_of, ratio=ratio, before_timing=session.timing("subject"))
        return effect(before, after, fix, method, on_top_of)

    def vs_float(self, after: Measured) -> tuple[Timing | None, Ratio | None]:
        """The float baseline's time at the fixed model's thread count and float / fixed, paired when possible."""
        session = after.session
        key = f"float@{after.threads}"
        if session is not None and key in session.per_call:
            return session.timing(key), session.ratio(key, after.key)
        return self.float_timing(after.threads), None

    # ---- measuring

    def reference(self) -> Any:
        if not self._reference_done:
            self._reference_done = True
            if self.float_model is not None:
                try:
                    self._reference = numerics.outputs(self.float_model, self.inputs)
                except Exception:
                    self._reference = None
        return self._reference

    def subject_outcome(self) -> Measured:
        facts = self.facts
        if self.subject_crashed:
            crash = self.subject_crash
            return Measured(error=f"{crash.type}: {first_line(crash.message)[:200]}" if crash else "it raised")
        bench = facts.benchmark
        return Measured(
            timing=bench.subject if bench else None,
            sqnr_db=facts.numerics.sqnr_db if facts.numerics else None,
            engine=self.base.engine,
            threads=self.measured_threads,
            key="subject",
        )

    def _measure(self, make: Build, engine: str, threads: int) -> Measured:
        return measure(
            make,
            self.inputs,
            engine,
            threads,
            reference=self.reference(),
            bench_time=self.options.bench_time if self.options.bench else None,
            keep_model=bool(self.options.save_fixed),
        )

    def rebuilt(self, recipe: RebuildPlan) -> Measured:
        if recipe not in self._cache:
            self._cache[recipe] = self._measure(
                lambda: self._build(recipe), recipe.engine, recipe.threads or self.measured_threads
            )
        return self._cache[recipe]

    def _build(self, recipe: RebuildPlan) -> tuple[nn.Module, list[str], str]:
        assert self.float_model is not None
        batches, calibration_code = self.batches, self.calibration_code
        if recipe.calibration_skip:
            batches = without_rows(self.batches, recipe.calibration_skip)
            calibration_code = skipping_rows_code(self.calibration_code, recipe.calibration_skip)
        names = self.code.names(calibration_code)
        if recipe.flow == FX:
            built = quantize.static_fx(
                self.float_model,
                self.inputs,
                recipe.engine,
                batches,
                qconfig_engine=recipe.qconfig_engine,
                calibrate_model=recipe.calibrate,
                convert=recipe.convert,
                names=names,
                float_layers=recipe.float_layers,
                weight_per_channel=recipe.weight_per_channel,
            )
        elif recipe.flow == DYNAMIC:
            by_name = {t.__name__: t for t in quantize.DYNAMIC_TYPES}
            types = [by_name[n] for n in recipe.dynamic_types if n in by_name] or None
            built = quantize.dynamic(
                self.float_model, recipe.engine, types, names=names, float_layers=recipe.float_layers
            )
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
                batches,
                groups=groups,
                wrap=recipe.stubs,
                qconfig_engine=recipe.qconfig_engine,
                calibrate_model=recipe.calibrate,
                convert=recipe.convert,
                train=not recipe.eval_mode,
                names=names,
                float_layers=recipe.float_layers,
                weight_per_channel=recipe.weight_per_channel,
            )
        steps, code = list(built.steps), built.code
        if recipe.calibration_skip:
            steps.append(f"calibration rows (batch, row) {sorted(recipe.calibration_skip)} left out")
        if recipe.threads:
            steps.append(f"{recipe.threads} intra-op thread(s)")
            code = f"torch.set_num_threads({recipe.threads})\n{code}"
        return built.model, steps, f"{self.code.header(direct=False)}\n{code}"

    def on_subject(self, codes: tuple[str, ...], fixes: dict[str, Fix]) -> Measured:
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
                return model, steps, self.code.header(direct=True) + "\n" + "\n".join(lines)

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
            with preserved_torch_state(), quiet():
                torch.set_num_threads(threads)
                try:
                    self._float_timings[threads] = timing.time_model(
                        self.float_model, self.inputs, self.options.bench_time, copy_model=False
                    )
                except Exception:
                    self._float_timings[threads] = None
        return self._float_timings[threads]

    # ---- the speed/accuracy table: the worst 1, 2, 3... layers in float

    def float_fallback(self, finding: Finding, fixes: dict[str, Fix]) -> dict[str, Any] | None:
        """Keep the worst 1, 2, 3... layers (by isolated SQNR) in float until the SQNR reaches the floor (or
        evaluate() is within MAX_DROP_POINTS of the float model's): each step's SQNR (or accuracy) and latency."""
        from qdoctor.diagnose.error_sources import MAX_DROP_POINTS
        from qdoctor.diagnose.locate import float_path

        order = [float_path(self.facts, p) for p in finding.evidence.get("worst_first") or []]
        if not order or finding.evidence.get("cause") in ("calibration-range", "train-mode-baseline"):
            return None
        if not self.rebuild or self.flow not in (EAGER, FX):
            return {"steps": [], "reason": self.no_rebuild_reason if not self.rebuild else f"a {self.flow} model"}
        evaluate = self.loaded.evaluate
        numerics_facts = self.facts.numerics
        metric_float = numerics_facts.metric_float if numerics_facts else None
        use_metric = evaluate is not None and metric_float is not None
        scale = 100.0 if use_metric and metric_float is not None and abs(metric_float) <= 1.0 else 1.0
        base = self.as_written({c: f for c, f in fixes.items() if "float_layers" not in f.fixed})
        steps: list[dict[str, Any]] = []
        outcomes: list[Measured] = []
        chosen = None
        for count in range(1, min(len(order), MAX_FALLBACK_STEPS) + 1):
            recipe = base.changed(float_layers=tuple(order[:count]))
            self.progress(f"speed/accuracy table: {count} layer(s) in float")
            outcome = self._measure_kept(recipe)
            outcomes.append(outcome)
            step: dict[str, Any] = {
                "float_layers": list(order[:count]),
                "sqnr_db": rounded_db(outcome.sqnr_db),
                "error": outcome.error,
            }
            if use_metric and outcome.model is not None and evaluate is not None and metric_float is not None:
                try:
                    metric = float(evaluate(outcome.model))
                    step["metric"] = metric
                    step["drop_points"] = round((metric_float - metric) * scale, 3)
                except Exception as exc:
                    step["error"] = f"evaluate() raised {exception_line(exc, 120)}"
            outcome.model = None
            steps.append(step)
            if step.get("error"):
                break
            met = (
                step.get("drop_points") is not None and step["drop_points"] <= MAX_DROP_POINTS
                if use_metric
                else outcome.sqnr_db is not None and outcome.sqnr_db >= SQNR_FLOOR_DB
            )
            if met:
                chosen = count - 1
                step["code"] = outcome.code
                break
        # the steps' latencies in one session of paired rounds with the subject and the float baseline
        self.time_together(outcomes)
        for step, outcome in zip(steps, outcomes, strict=True):
            step["ms"] = rounded_ms(outcome.timing.median_ms) if outcome.timing else None
            step["iqr_ms"] = rounded_ms(outcome.timing.iqr_ms) if outcome.timing else None
            if outcome.error and not step.get("error"):
                step["error"] = outcome.error
        return {
            "target": (
                f"evaluate() within {MAX_DROP_POINTS:g} point(s) of the float model"
                if use_metric
                else f"SQNR >= {SQNR_FLOOR_DB:g} dB"
            ),
            "before_sqnr_db": rounded_db(self.facts.numerics.sqnr_db if self.facts.numerics else None),
            "before_ms": rounded_ms(self.facts.benchmark.subject.median_ms)
            if self.facts.benchmark and self.facts.benchmark.subject
            else None,
            "float_ms": rounded_ms(self.facts.benchmark.float_baseline.median_ms)
            if self.facts.benchmark and self.facts.benchmark.float_baseline
            else None,
            "steps": steps,
            "chosen": chosen,
        }

    def _measure_kept(self, recipe: RebuildPlan) -> Measured:
        return measure(
            lambda: self._build(recipe),
            self.inputs,
            recipe.engine,
            recipe.threads or self.measured_threads,
            reference=self.reference(),
            bench_time=self.options.bench_time if self.options.bench else None,
            keep_model=True,
        )

    # ---- verification of each fix, and fix all

    def method(self, direct: bool) -> str:
        target = self.loaded.target
        if direct:
            return f"the fix applied to a copy of `{target.subject_name}`"
        return (
            f"rebuilt from a copy of `{target.float_name}` (the float baseline) the way the script did it "
            f"({self.flow} mode, engine '{self.base.engine}', qconfig '{self.base.qconfig_engine}'), then fixed"
        )

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

    def as_written(self, fixes: dict[str, Fix]) -> RebuildPlan:
        """The recipe the script followed: the user's engine and qconfig family, with every finding's defect."""
        fields: dict[str, Any] = {}
        for fix in fixes.values():
            fields.update(fix.as_written)
        return self.base.changed(**fields)

    @staticmethod
    def fixed_recipe(recipe: RebuildPlan, fixes: dict[str, Fix], codes: Any) -> RebuildPlan:
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
        plans: list[tuple[str, Measured, Measured, list[str], bool]] = []  # code, before, after, on top of, direct
        for code in rebuilt:
            self.progress(f"verifying the fix for {code}")
            if code in blocking:
                before, after = subject, self.rebuilt(runnable)
                on_top_of = [c for c in blocking if c != code]
            else:
                before = subject if not self.subject_crashed else self.rebuilt(runnable)
                after = self.rebuilt(runnable.changed(**fixes[code].fixed))
                on_top_of = blocking
            plans.append((code, before, after, on_top_of, False))
        for code in direct:
            self.progress(f"verifying the fix for {code}")
            plans.append((code, subject, self.on_subject((code,), fixes), [], True))
        if plans and self.options.bench:
            self.progress("timing the fixes with the subject and the float baseline in interleaved rounds")
        # fix-all is built now and timed in the same rounds: the subject and the float baseline are timed once
        applied = [code for code, _, after, _, _ in plans if not after.cannot]
        together = [self.fix_all_model(fixes, applied)[1]] if applied else []
        self.time_together([m for _, before, after, _, _ in plans for m in (before, after)] + together)
        for code, before, after, on_top_of, is_direct in plans:
            results[code] = self.subject_effect(before, after, fixes[code], self.method(is_direct), on_top_of)
        return results

    def fix_all_model(self, fixes: dict[str, Fix], applied: list[str]) -> tuple[tuple[bool, tuple[str, ...]], Measured]:
        """The model with every applied fix (built once, cached by its recipe): on a copy of the subject when every
        applied fix can go there (or nothing can be rebuilt), else rebuilt from float; and (direct, its codes)."""
        direct = self.direct_codes({c: fixes[c] for c in applied})
        use_direct = not self.rebuild or len(direct) == len(applied)
        codes = tuple(sorted(direct)) if use_direct else tuple(sorted(applied))
        if use_direct:
            return (use_direct, codes), self.on_subject(codes, fixes)
        return (use_direct, codes), self.rebuilt(self.fixed_recipe(self.as_written(fixes), fixes, codes))

    def fix_all(
        self, fixes: dict[str, Fix], results: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, Any], Measured | None]:
        applied = [c for c in fixes if results.get(c, {}).get("applied")]
        if not applied:
            return {"applied": False, "reason": "no fix could be applied", "fixes": []}, None
        self.progress("verifying all fixes together")
        (use_direct, codes), after = self.fix_all_model(fixes, applied)
        self.time_together([after])  # already timed with the single fixes unless the applied ones differ
        before = self.subject_outcome()
        session = after.session
        if session is not None and "subject" in session.per_call:
            before.timing = session.timing("subject")
        float_timing, vs_float = self.vs_float(after) if after.timing else (None, None)
        if vs_float is None and float_timing is not None and after.timing is not None:
            vs_float = paired(Measured(timing=float_timing), after)
        summary: dict[str, Any] = {
            "applied": after.error is None,
            "fixes": list(codes),
            "headline": headline(before, after, float_timing, vs_float),
            "before_ms": rounded_ms(before.timing.median_ms) if before.timing else None,
            "before_error": before.error,
            "after_ms": rounded_ms(after.timing.median_ms) if after.timing else None,
            "after_iqr_ms": rounded_ms(after.timing.iqr_ms) if after.timing else None,
            "after_runs": after.timing.runs if after.timing else None,
            "after_noisy": after.timing.noisy if after.timing else None,
            "float_ms": rounded_ms(float_timing.median_ms) if float_timing else None,
            "speedup_vs_float": round(vs_float.value, 3) if vs_float is not None else None,
            "speedup_vs_float_interval": vs_float.as_dict() if vs_float is not None else None,
            "vs_float": verdict(vs_float),
            "before_sqnr_db": rounded_db(before.sqnr_db),
            "after_sqnr_db": rounded_db(after.sqnr_db),
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


def _engine_context(engine: str) -> Callable[[], AbstractContextManager[None]]:
    return lambda: quantized_engine(engine)


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
            if "float_fallback" in extras["fix_all"]:
                extras["float_fallback"] = extras["fix_all"].pop("float_fallback")
        except Exception as exc:
            reason = f"verification failed: {exception_line(exc, 200)} (a qdoctor bug: please report it)"
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
) -> tuple[dict[str, Any], Measured | None]:
    stage = Verification(loaded, facts, options, progress)
    outcomes: dict[str, Fix | CannotApply] = {}
    for code in sorted({f.rule for f in relevant}):
        first = next(f for f in relevant if f.rule == code)
        outcomes[code] = transforms[code].make(stage.ctx, first)
    fixes = {c: o for c, o in outcomes.items() if isinstance(o, Fix)}
    results = {c: {"applied": False, "reason": o.reason} for c, o in outcomes.items() if isinstance(o, CannotApply)}
    results.update(stage.verify_each(fixes))
    hotspot = next((f for f in relevant if "worst_first" in f.evidence), None)  # the error-hotspot finding
    if hotspot is not None:
        ladder = stage.float_fallback(hotspot, fixes)
        if ladder is not None:
            stage.extras["float_fallback"] = ladder
    for finding in relevant:
        finding.verified = dict(results[finding.rule])
    summary, fixed = stage.fix_all(fixes, results)
    summary["left_out"] = {c: r.get("reason", "") for c, r in results.items() if c not in summary["fixes"]}
    if stage.extras:
        summary["float_fallback"] = stage.extras["float_fallback"]
    return summary, fixed
