"""The speed/accuracy table (a ``FallbackLadder``): keep the worst 1, 2, 3... layers in float, rebuilt from the
float baseline, until the accuracy target is met; each step's SQNR (or evaluate()) and latency, timed together
with the subject and the float baseline.

Which finding gets a table, and the order of its layers, is its transform's ``ladder`` (qdoctor.prescribe.fixes).
"""

from __future__ import annotations

from qdoctor.diagnose.error_sources import MAX_DROP_POINTS
from qdoctor.facts import SQNR_FLOOR_DB
from qdoctor.facts.location import exception_line
from qdoctor.facts.prescription import FallbackLadder, FallbackStep
from qdoctor.prescribe.counterfactuals import Counterfactuals
from qdoctor.prescribe.fixes import Fix
from qdoctor.prescribe.measure import Measured, rounded_db, rounded_ms

MAX_FALLBACK_STEPS = 5  # the speed/accuracy table keeps at most this many layers in float


def fallback_ladder(stage: Counterfactuals, order: list[str], fixes: dict[str, Fix]) -> FallbackLadder:
    """Keep the layers of ``order`` (float paths, worst first) in float, one more at each step, until the SQNR
    reaches the floor (or evaluate() is within MAX_DROP_POINTS of the float model's), with the other fixes that do
    not themselves keep layers in float applied as written."""
    if not stage.rebuild or not stage.ctx.rebuilds_static("float_layers"):
        reason = stage.no_rebuild_reason if not stage.rebuild else f"a {stage.ctx.flow_name} model"
        return FallbackLadder(reason=reason)
    facts = stage.facts
    evaluate = stage.loaded.evaluate
    metric_float = facts.numerics.metric_float if facts.numerics else None
    use_metric = evaluate is not None and metric_float is not None
    scale = 100.0 if use_metric and metric_float is not None and abs(metric_float) <= 1.0 else 1.0
    base = stage.as_written({c: f for c, f in fixes.items() if "float_layers" not in f.fixed})
    steps: list[FallbackStep] = []
    outcomes: list[Measured] = []
    chosen = None
    for count in range(1, min(len(order), MAX_FALLBACK_STEPS) + 1):
        recipe = base.changed(float_layers=tuple(order[:count]))
        stage.progress(f"speed/accuracy table: {count} layer(s) in float")
        outcome = stage.measure_kept(recipe)
        outcomes.append(outcome)
        step = FallbackStep(list(order[:count]), sqnr_db=rounded_db(outcome.sqnr_db), error=outcome.error)
        if use_metric and outcome.model is not None and evaluate is not None and metric_float is not None:
            try:
                step.metric = float(evaluate(outcome.model))
                step.drop_points = round((metric_float - step.metric) * scale, 3)
            except Exception as exc:
                step.error = f"evaluate() raised {exception_line(exc, 120)}"
        outcome.model = None
        steps.append(step)
        if step.error:
            break
        met = (
            step.drop_points is not None and step.drop_points <= MAX_DROP_POINTS
            if use_metric
            else outcome.sqnr_db is not None and outcome.sqnr_db >= SQNR_FLOOR_DB
        )
        if met:
            chosen = count - 1
            step.code = outcome.code
            break
    # the steps' latencies in one session of paired rounds with the subject and the float baseline
    stage.time_together(outcomes)
    for step, outcome in zip(steps, outcomes, strict=True):
        step.ms = rounded_ms(outcome.timing.median_ms) if outcome.timing else None
        step.iqr_ms = rounded_ms(outcome.timing.iqr_ms) if outcome.timing else None
        if outcome.error and not step.error:
            step.error = outcome.error
    bench = facts.benchmark
    return FallbackLadder(
        steps=steps,
        target=(
            f"evaluate() within {MAX_DROP_POINTS:g} point(s) of the float model"
            if use_metric
            else f"SQNR >= {SQNR_FLOOR_DB:g} dB"
        ),
        before_sqnr_db=rounded_db(facts.numerics.sqnr_db if facts.numerics else None),
        before_ms=rounded_ms(bench.subject.median_ms) if bench and bench.subject else None,
        float_ms=rounded_ms(bench.float_baseline.median_ms) if bench and bench.float_baseline else None,
        chosen=chosen,
    )
