"""The core of `qdoctor compare`: load the float model, apply each recipe to a copy, measure, recommend.

Never prints and never exits. A recipe that raises is recorded as failed (with the phase and the error) and the
run goes on; torch's global state is restored afterwards.
"""

from __future__ import annotations

import copy
import functools
import gc
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from qdoctor import __version__, flows
from qdoctor.compare import recipes as R
from qdoctor.compare.result import (
    FAILED,
    FP32,
    SKIPPED,
    Candidate,
    CompareResult,
    Limits,
    accuracy_within_limit,
    metric_drop_points,
    recommend,
)
from qdoctor.compare.turns import Contender, time_in_turns
from qdoctor.errors import TargetError
from qdoctor.facts import Contention, ratio_of
from qdoctor.facts.location import exception_line
from qdoctor.facts.weights import overridden
from qdoctor.gather.environment import gather_environment
from qdoctor.gather.numerics import flat_tensors, sqnr_db
from qdoctor.gather.weights import weights_fact
from qdoctor.introspect.flow import model_flow
from qdoctor.introspect.state import preserved_torch_state, quiet
from qdoctor.load.options import LoadOptions
from qdoctor.load.target import LoadedTarget
from qdoctor.prescribe.recipe import fusion_plan
from qdoctor.report.notes import script_notes
from qdoctor.run.check import load_target_explained

Progress = Callable[[str], None]
LARGE_MODEL_BYTES = 16_000_000
DEGENERATE_OUTPUT = 1e-6
CHECK_SEED = 1  # the random stand-in batches SQNR is measured on differ from the calibration ones (seed 0)


@dataclass
class CompareOptions:
    recipes: str | None = None  # --recipes; None: the default set
    limits: Limits = field(default_factory=Limits)
    bench_time: float = 1.0  # seconds of timed runs per recipe (torch.utils.benchmark min_run_time)
    calibration_batches: int = flows.CALIBRATION_BATCHES  # random stand-ins when the script has no calibration_data()
    check_batches: int = 8  # batches SQNR and top-1 agreement are measured on
    load: LoadOptions = field(default_factory=LoadOptions)  # keep going past errors, offline stand-ins
    weights: str = "auto"  # --weights: auto (detect), trained or untrained (untrained: accuracy not judged)
    deploy: str | None = None  # --deploy: also lower each recipe for that runtime and time it there


@dataclass
class _Context:
    given: R.BuildInputs
    check_batches: list[tuple[Any, ...]]
    evaluate: Callable[[nn.Module], float] | None
    environment: Any
    collect_garbage: bool = False


def float_model_of(loaded: LoadedTarget) -> tuple[nn.Module, str]:
    """The float model to quantize: the script's float baseline, else its subject when that is still float."""
    target = loaded.target
    if loaded.float_baseline is not None:
        return loaded.float_baseline, target.float_name or "float baseline"
    if model_flow(loaded.subject).level == 0:
        return loaded.subject, target.subject_name
    raise TargetError(
        f"compare needs the float model, and `{target.subject_name}` is already quantized: "
        "define `float_model` or `build_float_model()` in the script"
    )


def _check_batches(
    loaded: LoadedTarget, calibration: list[tuple[Any, ...]], count: int
) -> tuple[list[tuple[Any, ...]], str]:
    if loaded.calibration_data is not None:
        batches = calibration[:count]
        return batches, f"the first {len(batches)} calibration_data() batch(es) (the same data used to calibrate)"
    batches, _ = flows.calibration_batches(None, loaded.inputs, count, seed=CHECK_SEED)
    return batches, (
        f"the example inputs plus {len(batches) - 1} random batch(es) of the same shape, not those used to "
        "calibrate (define calibration_data() and evaluate() for real data)"
    )


def top1_agreement(reference: list[Any], outputs: list[Any]) -> tuple[float | None, int]:
    """Share of samples whose argmax matches the reference's, when every output is one (batch, classes) tensor."""
    agree = total = 0
    for ref, out in zip(reference, outputs, strict=False):
        refs, outs = flat_tensors(ref), flat_tensors(out)
        if len(refs) != 1 or len(outs) != 1:
            return None, 0
        r, o = refs[0], outs[0]
        if r.dim() != 2 or r.shape != o.shape or r.shape[1] < 2 or not r.is_floating_point():
            return None, 0
        agree += int((r.argmax(dim=1) == o.argmax(dim=1)).sum())
        total += r.shape[0]
    return (agree / total if total else None), total


def run_recipe(
    recipe: R.Recipe, ctx: _Context, progress: Progress
) -> tuple[Candidate, list[Any] | None, flows.Built | None]:
    """Build, run and evaluate one recipe on a copy, and measure its size. Returns the candidate, its outputs on
    the check batches and the built model to time (both None unless it is ok). Never raises for the recipe's own
    errors. Timing comes later, for all recipes in turns (time_recipes)."""
    candidate = Candidate(recipe.name, R.flow_name(recipe), recipe.engine, recipe.title)
    compiles = recipe.flow is not None and recipe.flow.compiles_on_first_run
    candidate.first_run_compiles = compiles
    why = R.unavailable(recipe, ctx.environment)
    if why:
        candidate.status, candidate.reason = SKIPPED, why
        return candidate, None, None
    outputs: list[Any] | None = None
    built = None
    phase = "build"
    try:
        progress(f"{recipe.name}: building")
        start = time.perf_counter()
        with quiet():
            built = R.build(recipe, ctx.given)
        candidate.build_s = time.perf_counter() - start
        candidate.steps, candidate.code = list(built.steps), built.code
        with R.runtime(recipe, built), quiet(), torch.no_grad():
            phase = "run"
            progress(f"{recipe.name}: first run" + (" (it compiles)" if compiles else ""))
            start = time.perf_counter()
            built.model(*ctx.given.inputs)
            candidate.first_run_s = time.perf_counter() - start
            outputs = [built.model(*batch) for batch in ctx.check_batches]
            if ctx.evaluate is not None:
                phase = "evaluate"
                progress(f"{recipe.name}: evaluate()")
                candidate.metric = float(ctx.evaluate(built.model))
        phase = "size"
        candidate.size_bytes = R.model_bytes(recipe, built)
    except R.SkipRecipe as exc:
        candidate.status, candidate.reason = SKIPPED, str(exc)
    except Exception as exc:
        _failed(candidate, phase, exc)
    finally:
        if ctx.collect_garbage:
            gc.collect()  # a full collection costs ~0.3 s: worth it only to free the leftovers of a large model
    if not candidate.ok:
        return candidate, None, None
    return candidate, outputs, built


def _failed(candidate: Candidate, phase: str, exc: BaseException) -> None:
    candidate.status, candidate.phase, candidate.reason = FAILED, phase, exception_line(exc, 400)
    candidate.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-6000:]


def time_recipes(
    measured: list[tuple[Candidate, R.Recipe, flows.Built]], inputs: tuple[Any, ...], bench_time: float
) -> Contention | None:
    """Time every built model in interleaved rounds (qdoctor.compare.turns), each under its recipe's runtime context;
    each candidate's speedup over fp32 comes from the paired rounds, with its interval. Returns the contention seen."""

    def contender(candidate: Candidate, recipe: R.Recipe, built: flows.Built) -> Contender:
        model = built.model

        def run() -> None:
            with torch.no_grad():
                model(*inputs)

        return Contender(candidate.recipe, run, lambda: R.runtime(recipe, built))

    timings, rounds = time_in_turns([contender(*entry) for entry in measured], bench_time)
    for candidate, _, _ in measured:
        timing = timings[candidate.recipe]
        if isinstance(timing, BaseException):
            _failed(candidate, "time", timing)
        else:
            candidate.latency = timing
            if candidate.recipe != FP32:
                candidate.speedup_interval = rounds.ratio(FP32, candidate.recipe)
    return rounds.contention


def _fill_comparisons(
    candidate: Candidate,
    fp32: Candidate | None,
    reference: list[Any] | None,
    outputs: list[Any] | None,
    limits: Limits,
    judged: bool = True,
) -> None:
    if fp32 is not None and fp32.latency is not None and candidate.latency is not None and candidate.latency.median_ms:
        candidate.speedup = fp32.latency.median_ms / candidate.latency.median_ms
        if candidate.speedup_interval is None and candidate is not fp32:
            candidate.speedup_interval = ratio_of(fp32.latency, candidate.latency)
    if fp32 is not None and fp32.size_bytes and candidate.size_bytes:
        candidate.size_ratio = fp32.size_bytes / candidate.size_bytes
    if reference is not None and outputs is not None:
        candidate.sqnr_db = sqnr_db(reference, outputs)
        candidate.top1_agreement, candidate.top1_samples = top1_agreement(reference, outputs)
    if fp32 is not None and fp32.metric is not None and candidate.metric is not None:
        candidate.metric_drop = metric_drop_points(fp32.metric, candidate.metric)
    if candidate.ok and judged:  # untrained weights: the SQNR of a random draw judges no recipe
        candidate.within_limit = accuracy_within_limit(candidate, limits)


def _require_float_ok(fp32: Candidate) -> None:
    """The float model itself must run (inputs, evaluate()): without it there is nothing to compare against."""
    if not fp32.ok:
        where = "evaluate(float model)" if fp32.phase == "evaluate" else f"the {fp32.phase} of the float model"
        raise TargetError(f"{where} failed: {fp32.reason}")


def compare(spec: str, options: CompareOptions | None = None, progress: Progress = lambda _: None) -> CompareResult:
    """Compare quantization recipes on one target. Raises TargetError when it cannot compare at all."""
    options = options or CompareOptions()
    started = time.perf_counter()
    with preserved_torch_state():
        try:
            selected, not_run = R.select(options.recipes, gather_environment())
        except ValueError as exc:
            raise TargetError(str(exc)) from None
        progress(f"loading {spec}")
        loaded = load_target_explained(spec, options=options.load)
        return compare_loaded(loaded, options, progress, started)


def compare_loaded(
    loaded: LoadedTarget, options: CompareOptions, progress: Progress = lambda _: None, started: float | None = None
) -> CompareResult:
    """Compare recipes on a loaded target (a script's, or a live float model from qdoctor.api)."""
    started = time.perf_counter() if started is None else started
    spec = loaded.target.spec
    with preserved_torch_state():
        environment = gather_environment(loaded.user_engine, loaded.user_num_threads)
        try:
            selected, not_run = R.select(options.recipes, environment)
        except ValueError as exc:
            raise TargetError(str(exc)) from None
        float_model, float_name = float_model_of(loaded)
        target = loaded.target
        weights = overridden(weights_fact(float_model, target.substitutions, target.script_text), options.weights)
        calibration, calibration_source = flows.calibration_batches(
            loaded.calibration_data, loaded.inputs, options.calibration_batches
        )
        check, check_source = _check_batches(loaded, calibration, options.check_batches)
        ctx = _Context(
            given=R.BuildInputs(
                float_model,
                tuple(loaded.inputs),
                calibration,
                vnni=environment.has_vnni,
                fusion_plan=functools.cache(
                    lambda: fusion_plan(copy.deepcopy(float_model).eval(), tuple(loaded.inputs))
                ),
                explain_failure=R.explain_eager_failure,
            ),
            check_batches=check,
            evaluate=loaded.evaluate,
            environment=environment,
            collect_garbage=sum(p.numel() * p.element_size() for p in float_model.parameters()) > LARGE_MODEL_BYTES,
        )
        candidates: list[Candidate] = []
        outputs: dict[str, list[Any] | None] = {}
        measured: list[tuple[Candidate, R.Recipe, flows.Built]] = []
        measurement = None
        deployed = None
        try:
            for recipe in selected:
                candidate, outputs[recipe.name], built = run_recipe(recipe, ctx, progress)
                if recipe.name == FP32:
                    _require_float_ok(candidate)
                candidates.append(candidate)
                if built is not None:
                    measured.append((candidate, recipe, built))
            progress(f"timing {len(measured)} models in interleaved rounds")
            measurement = time_recipes(measured, ctx.given.inputs, options.bench_time)
            _require_float_ok(candidates[0])
            if options.deploy is not None:  # before the built models are released
                from qdoctor.compare.deploy import deploy_recipes

                deployed = deploy_recipes(
                    options.deploy, float_model, ctx.given.inputs, calibration, measured, options.bench_time, progress
                )
        finally:
            ran = {id(recipe.flow): recipe.flow for _, recipe, _ in measured if recipe.flow is not None}
            measured.clear()  # the built models go here
            built = None
            for flow in ran.values():
                flow.release()  # compiled graphs and their frozen weights
            if ctx.collect_garbage:
                gc.collect()
        fp32 = candidates[0]
        reference = outputs[FP32]
        for candidate in candidates:
            _fill_comparisons(
                candidate, fp32, reference, outputs.get(candidate.recipe), options.limits, not weights.untrained
            )
    notes = _notes(loaded, candidates, not_run, selected)
    if weights.untrained:
        notes.insert(0, weights.note() or "")
    if measurement is not None:
        notes.insert(0, f"measured: {measurement.action}")
    if reference is not None:
        largest = max((float(t.abs().max()) for t in flat_tensors(reference) if t.numel()), default=0.0)
        if largest < DEGENERATE_OUTPUT:
            notes.insert(
                0,
                (
                    f"the fp32 outputs are all but zero (largest |value| {largest:.1e}): int8 rounds them to 0, so SQNR "
                    "and top-1 agreement say nothing. Random weights with untouched BatchNorm statistics do this; use "
                    "trained weights or estimate the statistics first"
                ),
            )
    return CompareResult(
        spec=spec,
        file=loaded.target.file,
        float_name=float_name,
        input_shapes=[t.shape for t in loaded.target.inputs],
        environment=environment,
        limits=options.limits,
        candidates=candidates,
        recommendation=recommend(candidates, options.limits, environment, not weights.untrained),
        measurement=measurement,
        calibration_source=calibration_source,
        check_source=check_source,
        metric_name="evaluate()" if loaded.evaluate is not None else None,
        not_run=not_run,
        notes=notes,
        substitutions=list(loaded.target.substitutions),
        wall_s=time.perf_counter() - started,
        qdoctor_version=__version__,
        weights=weights,
        deploy=deployed,
    )


def _notes(
    loaded: LoadedTarget, candidates: list[Candidate], not_run: dict[str, str], selected: list[R.Recipe]
) -> list[str]:
    target = loaded.target
    notes = script_notes(target)
    if target.inputs_inferred:
        notes.append(f"inputs: {target.inputs_inferred}")
    if target.float_derived:
        notes.append(f"float model: {target.float_derived}")
    if loaded.evaluate is None:
        notes.append(
            "no evaluate(model) in the script: accuracy is judged by SQNR against fp32 only; define evaluate() "
            "returning an accuracy for a real accuracy drop"
        )
    if any(c.latency is not None and (c.latency.noisy or c.latency.contended) for c in candidates):
        notes.append(
            "latencies marked * are noisy (IQR above 10% of the median) or were taken while other processes used "
            "the cores measured on"
        )
    others = [r.name for r in R.catalog() if r.name not in {s.name for s in selected} and r.name not in not_run]
    if others:
        notes.append(f"also available: {', '.join(others)} (--recipes all)")
    notes.append(
        "latencies are medians (over rounds) of one forward on the example inputs under the recipe's "
        "engine, timed in interleaved rounds so that a change in machine load hits every recipe alike; each speedup "
        "over fp32 is from paired rounds with a 95% bootstrap interval; build and first-run times are single "
        "wall-clock runs"
    )
    return notes
