"""The counterfactuals of one check: the subject's model rebuilt from a copy of the float baseline the way the
script did it (its flow, engine and qconfig family, its defects), then with fixes; or fixed on a copy of the subject.
Each is built once (cached by its plan), measured against the float baseline's outputs (SQNR), and timed together
with the subject and the float baseline in one session of interleaved rounds (qdoctor.gather.rounds), so that every
ratio between them is paired.
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
from qdoctor.facts import Facts, Ratio, Timing, recommended_engine
from qdoctor.facts.location import exception_line, first_line
from qdoctor.facts.prescription import Verified
from qdoctor.flows import RebuildInputs, RebuildPlan, detect, rebuild_flow
from qdoctor.gather import numerics, timing
from qdoctor.gather.resources import model_bytes
from qdoctor.gather.rounds import Variant
from qdoctor.introspect.flow import model_flow
from qdoctor.introspect.kinds import eager_module
from qdoctor.introspect.state import preserved_torch_state, quantized_engine, quiet
from qdoctor.load.target import LoadedTarget
from qdoctor.prescribe.calibration import calibration_for, skipping_rows_code, without_rows
from qdoctor.prescribe.fixes import Fix, FixContext
from qdoctor.prescribe.measure import Build, Measured, effect, measure, paired
from qdoctor.prescribe.recipe import float_for_rebuild, fused_in_subject, fusion_plan, qconfig_engine_of
from qdoctor.prescribe.snippet import FixCode

VERIFY_BENCH_TIME = (
    0.15  # seconds of timed runs per model in the verification rounds (the check's benchmark: --bench-time)
)
VERIFY_MIN_ROUNDS = 5  # paired rounds at least, even when a round of every model outlasts the budget

Progress = Callable[[str], None]


# Above this float model size the counterfactuals are built, timed and freed one at a time (their rounds are then
# paired with the subject and the float baseline per fix, not across fixes): 256 MB, a ResNet-101 or a BERT-base.
ONE_AT_A_TIME_BYTES = 256 * 2**20


@dataclass
class PrescribeOptions:
    bench: bool = True  # time the counterfactuals (else SQNR only)
    bench_time: float = VERIFY_BENCH_TIME
    save_fixed: str | None = None  # write the "fix all" model here
    keep_fixed: bool = False  # hand the "fix all" model back (the next treatment round examines it)
    # the plan that built the subject (a treatment round's subject is the previous round's fix-all): the "as
    # written" recipe starts there, so that this round's fixes compose with the earlier rounds'
    start_from: RebuildPlan | None = None


class Counterfactuals:
    """The counterfactuals of one check: the model rebuilt as the script did it, then with each fix; measured once
    each (cached by recipe). The flow that rebuilds the subject (qdoctor.flows.rebuild_flow) builds them."""

    def __init__(self, loaded: LoadedTarget, facts: Facts, options: PrescribeOptions, progress: Progress) -> None:
        self.loaded, self.facts, self.options, self.progress = loaded, facts, options, progress
        self.inputs = loaded.inputs
        look = model_flow(loaded.subject)
        self.flow = rebuild_flow(look)  # None: the subject cannot be rebuilt (QAT, a converted PT2E model)
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
        self.rebuild = loaded.float_baseline is not None and self.flow is not None
        subject_flow = detect(look)
        if loaded.float_baseline is None:
            self.no_rebuild_reason = (
                "no float baseline in the target to rebuild from (define `float_model` or `build_float_model()`)"
            )
        elif look.qat:
            self.no_rebuild_reason = (
                "a QAT model is fixed on a copy of itself: a rebuild from float would lose its training"
            )
        else:
            self.no_rebuild_reason = f"qdoctor cannot rebuild a {subject_flow.kind.name} model from its float baseline"
        self.float_model = float_for_rebuild(loaded.float_baseline) if loaded.float_baseline is not None else None
        self.code = FixCode(loaded)
        self.batches, self.calibration, self.calibration_code = calibration_for(loaded, self.code.stand_in_calibration)
        groups: list[list[str]] = []
        relu_fused = bn_folded = True
        fuses_by_hand = self.flow is not None and self.flow.static and not self.flow.fuses_itself  # eager
        if self.rebuild and fuses_by_hand and self.float_model is not None:
            groups = fusion_plan(self.float_model, self.inputs)
            relu_fused, bn_folded = fused_in_subject(loaded.subject, self.float_model, groups)
        self.groups = groups
        dynamic_types = tuple(
            sorted({m.type for m in facts.modules or [] if m.kind == "dynamic_quantized" and m.is_leaf})
        )
        start = options.start_from
        if start is not None and start.flow is self.flow and self.flow is not None:
            self.base = start
        else:
            self.base = RebuildPlan(
                flow=self.flow,
                engine=engine,
                qconfig_engine=qconfig_engine_of(facts, engine),
                fuse_activations=relu_fused,
                fold_bn=bn_folded,
                dynamic_types=dynamic_types,
            )
        self.ctx = FixContext(
            facts=facts,
            flow=self.flow,
            qat=look.qat,
            subject_flow=subject_flow.flow,
            base=self.base,
            recommended_engine=recommended_engine(facts.environment),
            calibration=self.calibration,
            has_float_baseline=loaded.float_baseline is not None,
            fusion_groups=groups,
            measured_threads=self.measured_threads,
        )
        # a model this big is verified one fix at a time: each counterfactual is timed as soon as it is built and
        # freed before the next, so that at most one copy beyond the script's own models is alive (issue 27)
        size = model_bytes(self.float_model) if self.float_model is not None else None
        self.one_at_a_time = size is not None and size > ONE_AT_A_TIME_BYTES
        self._reference: Any = None
        self._reference_done = False
        self._cache: dict[Any, Measured] = {}
        self._float_timings: dict[int, Timing | None] = {}

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

    def subject_effect(
        self, before: Measured, after: Measured, fix: Fix, method: str, on_top_of: list[str]
    ) -> Verified:
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
            keep_model=bool(self.options.save_fixed or self.options.keep_fixed),
        )

    def rebuilt(self, recipe: RebuildPlan) -> Measured:
        if recipe not in self._cache:
            self._cache[recipe] = self._measure(
                lambda: self._build(recipe), recipe.engine, recipe.threads or self.measured_threads
            )
            self._cache[recipe].plan = recipe
        return self._cache[recipe]

    def _build(self, recipe: RebuildPlan) -> tuple[nn.Module, list[str], str]:
        assert self.float_model is not None and recipe.flow is not None
        batches, calibration_code = self.batches, self.calibration_code
        if recipe.calibration_skip:
            batches = without_rows(self.batches, recipe.calibration_skip)
            calibration_code = skipping_rows_code(self.calibration_code, recipe.calibration_skip)
        given = RebuildInputs(self.float_model, self.inputs, batches, self.code.names(calibration_code), self.groups)
        built = recipe.flow.rebuild(recipe, given)
        steps, code = list(built.steps), built.code
        if recipe.calibration_skip:
            steps.append(f"calibration rows (batch, row) {sorted(recipe.calibration_skip)} left out")
        if recipe.threads:
            steps.append(f"{recipe.threads} intra-op thread(s)")
            code = f"torch.set_num_threads({recipe.threads})\n{code}"
        return built.model, steps, f"{self.code.header(direct=False)}\n{code}"

    def measure_kept(self, recipe: RebuildPlan) -> Measured:
        """Like rebuilt(), uncached, keeping the model (the speed/accuracy table evaluates it)."""
        return measure(
            lambda: self._build(recipe),
            self.inputs,
            recipe.engine,
            recipe.threads or self.measured_threads,
            reference=self.reference(),
            bench_time=self.options.bench_time if self.options.bench else None,
            keep_model=True,
        )

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

    # ---- verification of each fix, and fix all

    def method(self, direct: bool) -> str:
        target = self.loaded.target
        if direct:
            return f"the fix applied to a copy of `{target.subject_name}`"
        return (
            f"rebuilt from a copy of `{target.float_name}` (the float baseline) the way the script did it "
            f"({self.flow.name if self.flow else 'as written'} mode, engine '{self.base.engine}', qconfig '{self.base.qconfig_engine}'), then fixed"
        )

    def direct_codes(self, fixes: dict[str, Fix]) -> list[str]:
        return [
            c
            for c, f in fixes.items()
            if f.on_subject is not None and ((not self.subject_crashed and f.prefer_subject) or not self.rebuild)
        ]

    def calibrated(self, direct: bool, codes: tuple[str, ...], fixes: dict[str, Fix]) -> bool:
        """Whether qdoctor's calibration batches went into the fixed model (a direct convert uses the user's)."""
        if direct:
            return any("calibration" in fixes[c].details for c in codes)
        recipe = self.fixed_recipe(self.as_written(fixes), fixes, codes)
        return recipe.calibrated

    def as_written(self, fixes: dict[str, Fix]) -> RebuildPlan:
        """The recipe the script followed: the user's engine and qconfig family, with every finding's defect."""
        fields: dict[str, Any] = {}
        for fix in fixes.values():
            fields.update(fix.as_written)
        return self.base.changed(**fields)

    @staticmethod
    def fixed_recipe(recipe: RebuildPlan, fixes: dict[str, Fix], codes: Any) -> RebuildPlan:
        for code in codes:
            fields = dict(fixes[code].fixed)
            if "float_layers" in fields:  # layers kept float by an earlier fix (or treatment round) stay float
                kept = recipe.float_layers
                fields["float_layers"] = kept + tuple(p for p in fields["float_layers"] if p not in kept)
            recipe = recipe.changed(**fields)
        return recipe


def _engine_context(engine: str) -> Callable[[], AbstractContextManager[None]]:
    return lambda: quantized_engine(engine)
