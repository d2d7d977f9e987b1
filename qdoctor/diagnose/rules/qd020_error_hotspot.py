"""QD020 error-hotspot: the output SQNR is below what int8 normally gives (facts.SQNR_FLOOR_DB), with the layer(s)
whose own error is far above the rest named. Below the floor it always fires, saying so when no layer stands out."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor.diagnose import error_sources as E
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import float_variable, is_graph_module
from qdoctor.diagnose.registry import rule
from qdoctor.facts import SQNR_FLOOR_DB, Facts, LayerNumerics

GARBAGE_DB = 10.0  # below this the output is mostly noise: an error, not a warning


def _db(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} dB"


@rule(
    "QD020",
    "error-hotspot",
    Severity.WARNING,
    f"output SQNR below {SQNR_FLOOR_DB:.0f} dB (int8 normally gives 25-35 dB): the layers whose own error is far "
    "above the rest named",
    needs=("numerics",),
)
def error_hotspot(facts: Facts) -> Iterator[Finding]:
    numerics = facts.numerics
    if numerics is None or not E.below_floor(facts) or E.explained_elsewhere(facts):
        return
    if E.stood_in(facts):
        return  # random weights or fake data stood in: the error is theirs, not the user's model's
    train_mode_twin = E.float_twin_in_train_mode(facts)
    untrained = E.weights_untrained(facts)
    if untrained and not train_mode_twin:
        return  # untrained weights: their error says nothing about the user's trained model
    # a float baseline left in train mode makes the comparison itself wrong, trained weights or not; on untrained
    # weights the layers are not named (their error is the random draw's)
    layers = [] if untrained else numerics.layers
    spots = E.hotspots(layers)
    ranges = [] if train_mode_twin else E.harmful_range_outliers(layers)
    per_tensor = E.per_tensor_outliers(layers)
    drop = numerics.accuracy_drop_points
    lead = []
    if drop is not None:
        lead.append(
            f"evaluate() drops {drop:.1f} points ({numerics.metric_float:.4g} float -> {numerics.metric_subject:.4g} "
            "int8)"
        )
    lead.append(
        f"the output SQNR against float is {_db(numerics.sqnr_db)} (int8 normally gives 25-35 dB; the floor is {SQNR_FLOOR_DB:.0f} dB)"
    )
    message = "; ".join(lead) + ". "
    if spots:
        rest = [x.isolated_sqnr_db for x in layers if x not in spots and x.isolated_sqnr_db is not None]
        typical = sorted(rest)[len(rest) // 2] if rest else None
        named = ", ".join(f"`{s.path}` ({s.type}, {_db(s.isolated_sqnr_db)} alone)" for s in spots)
        message += (
            f"The error comes from {named}: fed the float model's own input, "
            + ("it adds" if len(spots) == 1 else "they add")
            + f" far more noise than the other layers (typically {_db(typical)} alone)."
        )
    elif layers:
        message += "No single layer stands out: the error is spread over the network (see the per-layer table)."
    else:
        message += f"No per-layer numbers to say where it comes from ({numerics.layers_note or 'not measured'})."
    cause = "layer"
    if train_mode_twin:
        cause = "train-mode-baseline"
        message += (
            " The float baseline runs Dropout/BatchNorm in train mode, so it answers differently on every call: "
            "call .eval() on it (and on the quantized model) before comparing."
        )
    if ranges:
        cause = "calibration-range"
        message += (
            f" `{ranges[0].path}`'s quantizer range is far wider than its data (a typical row spans "
            f"{ranges[0].levels_used or 0.0:.3g} of 256 levels): see QD022, keeping layers in float will not fix that."
        )
    elif per_tensor and not train_mode_twin and (not spots or any(s in per_tensor for s in spots)):
        cause = "per-tensor-weights"
        message += f" `{per_tensor[0].path}` has per-tensor weights with outlier channels: see QD021."
    worst = spots[0] if spots else (ranges[0] if ranges else None)
    module_info = facts.module(worst.path) if worst else None
    severity = Severity.ERROR if numerics.sqnr_db is not None and numerics.sqnr_db < GARBAGE_DB else Severity.WARNING
    yield error_hotspot.finding(
        message,
        module=worst.path if worst else None,
        source=module_info.source if module_info else None,
        severity=severity,
        evidence={
            "sqnr_db": round(numerics.sqnr_db, 2) if numerics.sqnr_db is not None else None,
            "floor_db": SQNR_FLOOR_DB,
            "accuracy_drop_points": round(drop, 3) if drop is not None else None,
            "hotspots": [s.path for s in spots],
            "worst_first": [x.path for x in E.worst_first(layers)],
            "cause": cause,
            "isolated_sqnr_db": {x.path: x.isolated_sqnr_db for x in layers},
        },
        fix=_fix(facts, spots, cause),
    )


def _fix(facts: Facts, spots: list[LayerNumerics], cause: str) -> str:
    if cause == "calibration-range":
        return "# the range comes from the calibration data: see QD022's fix"
    if cause == "train-mode-baseline":
        return f"{float_variable(facts)}.eval()  # compare in eval mode first; then see which layers still stand out"
    if not spots:
        return (
            "# no single layer to keep in float: check QD021/QD022, use more representative calibration data,\n"
            "# or quantization-aware training (torch.ao.quantization.prepare_qat)"
        )
    names = [s.path for s in spots]
    model = float_variable(facts)
    if is_graph_module(facts):
        lines = ['qconfig_mapping = get_default_qconfig_mapping("x86")']
        lines += [f'qconfig_mapping.set_module_name("{n}", None)  # keep it in float' for n in names]
        lines.append(f"prepared = prepare_fx({model}.eval(), qconfig_mapping, example_inputs)")
        return "\n".join(lines) + "\n# calibrate and convert_fx as before"
    listed = ", ".join(f'"{n}"' for n in names)
    if facts.flow is not None and facts.flow.kind.keep_float_code:  # the flow's own way (a PT2E quantizer filter)
        return facts.flow.kind.keep_float_code.format(names=listed)
    return (
        f"# keep them in float: qconfig None, with a DeQuantStub before and a QuantStub after each\n"
        f"for name in [{listed}]:\n"
        f'    parent_name, _, child = name.rpartition(".")\n'
        f"    parent = {model}.get_submodule(parent_name)\n"
        "    layer = getattr(parent, child)\n"
        "    layer.qconfig = None\n"
        "    setattr(parent, child, torch.nn.Sequential(\n"
        "        torch.ao.quantization.DeQuantStub(), layer, torch.ao.quantization.QuantStub()))\n"
        "# then prepare, calibrate and convert as before (after fuse_modules, before prepare)"
    )
