"""QD022 calibration-range-outliers: a quantizer's range far beyond what the data mostly produces (a few extreme
calibration values set the scale), naming the layer and, with calibration_data(), the batches and rows."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor.diagnose import error_sources as E
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts


@rule(
    "QD022",
    "calibration-range-outliers",
    Severity.WARNING,
    "an observer's range is far wider than the data mostly produces: a few extreme calibration values set the scale",
    needs=("numerics",),
)
def calibration_range_outliers(facts: Facts) -> Iterator[Finding]:
    numerics = facts.numerics
    if numerics is None or E.explained_elsewhere(facts) or E.float_twin_in_train_mode(facts):
        return
    if E.stood_in(facts):
        return  # random weights or fake data stood in: the error is theirs, not the user's model's
    # A property of the calibration data, judged on untrained weights too, but only where its harm shows (the layer's
    # own SQNR) and on a level count measured on real rows.
    found = E.harmful_range_outliers(numerics.layers)
    if not found:
        return
    first = found[0]  # in execution order: the layers after it inherit its coarse values
    rows = next((x.outlier_rows for x in found if x.outlier_rows), [])
    levels = first.levels_used
    assert levels is not None  # range_outliers() keeps only layers whose level count was measured
    message = (
        f"`{first.path}` ({first.type}) quantizes with a step of {first.output_scale:.3g}, but a typical row of its "
        f"output spans {levels:.3g} of the 256 int8 levels: its observer recorded a range far beyond what the data "
        "mostly produces, so ordinary values collapse onto a few levels"
        + (f" (and {len(found) - 1} later layer(s) likewise)" if len(found) > 1 else "")
        + "."
    )
    if rows:
        listed = ", ".join(f"batch {r.batch} row {r.row} (max |x| {r.max_abs:.3g})" for r in rows[:4])
        message += (
            f" The calibration rows responsible: {listed}, against {rows[0].typical_max_abs:.3g} for a typical row."
        )
        bad = sorted({(r.batch, r.row) for r in rows})
        fix = (
            f"bad_rows = {set(bad)!r}  # (batch, row) of calibration_data() that qdoctor found\n"
            "with torch.no_grad():\n"
            "    for i, batch in enumerate(calibration_data()):\n"
            "        batch = batch if isinstance(batch, (tuple, list)) else (batch,)\n"
            "        keep = [r for r in range(len(batch[0])) if (i, r) not in bad_rows]\n"
            "        prepared(*(t[keep] for t in batch))"
        )
    elif not facts.target.has_calibration_data:
        message += " Define calibration_data() in the script to have qdoctor name the rows responsible."
        fix = (
            "# clean the calibration data, or clip the range to a percentile of what it sees:\n"
            "qconfig = torch.ao.quantization.QConfig(\n"
            "    activation=torch.ao.quantization.HistogramObserver.with_args(reduce_range=True),\n"
            "    weight=torch.ao.quantization.default_per_channel_weight_observer)"
        )
    else:
        fix = (
            "# no single calibration row stands out: clip to a percentile of the range instead\n"
            "qconfig = torch.ao.quantization.QConfig(\n"
            "    activation=torch.ao.quantization.HistogramObserver.with_args(reduce_range=True),\n"
            "    weight=torch.ao.quantization.default_per_channel_weight_observer)"
        )
    info = facts.module(first.path)
    yield calibration_range_outliers.finding(
        message,
        module=first.path,
        source=info.source if info else None,
        evidence={
            "layers": [x.path for x in found],
            "levels_used": levels,
            "output_scale": first.output_scale,
            "isolated_sqnr_db": first.isolated_sqnr_db,
            "outlier_rows": [[r.batch, r.row] for r in rows],
            "outlier_max_abs": [r.max_abs for r in rows],
            "typical_max_abs": rows[0].typical_max_abs if rows else None,
        },
        fix=fix,
    )
