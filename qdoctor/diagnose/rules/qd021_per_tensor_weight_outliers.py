"""QD021 per-tensor-weight-outliers: per-tensor weight quantization on a layer whose output channels' weight ranges
differ by a large factor: the widest channel sets the one int8 step, and the others keep a handful of levels."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor.diagnose import error_sources as E
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import fix_engine, float_variable, is_graph_module
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts


@rule(
    "QD021",
    "per-tensor-weight-outliers",
    Severity.WARNING,
    "per-tensor int8 weights on a layer whose per-channel weight ranges differ by a large factor (use per-channel)",
    needs=("numerics",),
)
def per_tensor_weight_outliers(facts: Facts) -> Iterator[Finding]:
    numerics = facts.numerics
    if numerics is None or E.weights_untrained(facts):
        return  # untrained weights: their channel ranges are a random draw's, not the user's model's
    found = E.per_tensor_outliers(numerics.layers)
    if not found:
        return
    worst = max(found, key=lambda x: x.weight_channel_range_ratio or 0.0)
    engine = fix_engine(facts)
    model = float_variable(facts)
    names = ", ".join(f"`{x.path}`" for x in found[:4])
    whose = "its" if len(found) == 1 else f"`{worst.path}`'s"
    message = (
        f"{names} {'quantizes its' if len(found) == 1 else 'quantize their'} weights per tensor, but "
        f"{whose} output channels differ {worst.weight_channel_range_ratio:.0f}x in range: one step for "
        "the whole tensor is set by the widest channel, so the others keep a few of the 256 levels. Weight SQNR "
        f"{worst.weight_sqnr_db:.1f} dB per tensor; per-channel weights give {worst.weight_sqnr_per_channel_db:.1f} dB."
        if worst.weight_sqnr_db is not None and worst.weight_sqnr_per_channel_db is not None
        else f"{names}: per-tensor weights with output channels {worst.weight_channel_range_ratio:.0f}x apart in range."
    )
    if is_graph_module(facts):
        fix = (
            f'qconfig_mapping = torch.ao.quantization.get_default_qconfig_mapping("{engine}")  # per-channel weights\n'
            f"prepared = prepare_fx({model}.eval(), qconfig_mapping, example_inputs)"
        )
    else:
        fix = f'{model}.qconfig = torch.ao.quantization.get_default_qconfig("{engine}")  # per-channel weights'
    info = facts.module(worst.path)
    yield per_tensor_weight_outliers.finding(
        message,
        module=worst.path,
        source=info.source if info else None,
        evidence={
            "layers": [x.path for x in found],
            "channel_range_ratio": worst.weight_channel_range_ratio,
            "weight_sqnr_db": worst.weight_sqnr_db,
            "per_channel_weight_sqnr_db": worst.weight_sqnr_per_channel_db,
            "weight_qscheme": worst.weight_qscheme,
            "isolated_sqnr_db": worst.isolated_sqnr_db,
        },
        fix=fix,
    )
