"""QD004 unfused-modules: Conv-BN-ReLU, Conv-ReLU, Linear-ReLU, BN-ReLU... quantized without fuse_modules."""

from __future__ import annotations

import json
from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.fusion import Layer, base_type, executed_layers, fusion_groups
from qdoctor.diagnose.locate import float_path, float_variable, is_graph_module
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts, ModuleInfo, TraceEvent


def _will_be_quantized(info: ModuleInfo | None) -> bool:
    """Converted to int8 already, or on its way there (qconfig, observer, QAT module)."""
    if info is None:
        return False
    return info.kind in (F.QUANTIZED, F.QAT) or info.qconfig is not None or info.has_observer_attached


def _sequential_runs(facts: Facts) -> list[list[Layer]]:
    """Leaf modules in the order nn.Sequential containers run them: their registration order, by definition.

    Used when the traced forward did not get far (the model raised): the trace cannot confirm the order there, a
    Sequential's forward can. A shared module appears once in named_modules(), so a gap in a Sequential's numbered
    children means a module is reused there: the run is cut at the gap rather than guessed across it.
    """
    runs: list[list[Layer]] = []
    for container in facts.modules or []:
        if container.type != "Sequential":
            continue
        prefix = f"{container.path}." if container.path else ""
        children = [
            m for m in facts.modules or [] if m.path.startswith(prefix) and "." not in m.path[len(prefix) :] and m.path
        ]
        events: list[TraceEvent] = []
        expected = 0
        for child in children:
            name = child.path[len(prefix) :]
            if name.isdigit():
                if int(name) != expected:  # a gap: a shared module ran here too
                    runs.append(executed_layers(events))
                    events = []
                expected = int(name) + 1
            if child.is_leaf:
                # A module registered at several paths runs at each of them: one event per path keeps
                # fusion_groups from fusing it (its call count is then > 1).
                for _ in range(1 + len(child.also_at)):
                    events.append(TraceEvent("module", child.path, child.path, child.type, [], []))
            else:  # a nested container: its own run, and the end of this one
                runs.append(executed_layers(events))
                events = []
        runs.append(executed_layers(events))
    return [run for run in runs if run]


def unfused_groups(facts: Facts) -> tuple[list[list[str]], str]:
    """Fusable groups of to-be-quantized modules, and how their order was established."""
    trace = facts.trace
    runs = [executed_layers(trace.events)] if trace is not None else []
    how = "execution order of the traced forward"
    if trace is None or trace.crash is not None:
        runs += _sequential_runs(facts)
        how += " up to where it raised, and nn.Sequential order after that"
    groups: list[list[str]] = []
    for run in runs:
        for group in fusion_groups(run):
            if group not in groups and _will_be_quantized(facts.module(group[0])):
                groups.append(group)
    return groups, how


def _qat(facts: Facts) -> bool:
    return bool(facts.modules_of_kind(F.QAT, F.FAKE_QUANT))


def fuse_fix(facts: Facts, groups: list[list[str]]) -> str:
    name = float_variable(facts)
    lines = ",\n".join(f"        {json.dumps([float_path(facts, p) for p in group])}" for group in groups)
    call, mode = ("fuse_modules_qat", "train") if _qat(facts) else ("fuse_modules", "eval")
    root = facts.module("")
    hint = ""
    if root is not None and root.type.startswith("Quantizable"):
        hint = f"\n# torchvision's quantizable models do the same with {name}.fuse_model()"
    return (
        f"{name} = torch.ao.quantization.{call}(\n"
        f"    {name}.{mode}(),\n"
        "    [\n"
        f"{lines},\n"
        "    ],\n"
        ")  # before setting the qconfig and prepare(); then calibrate and convert as before" + hint
    )


@rule(
    "QD004",
    "unfused-modules",
    Severity.WARNING,
    "Conv-BN-ReLU, Conv-ReLU, Linear-ReLU or BN-ReLU quantized as separate modules instead of fused ones",
    needs=("modules",),
    explains_slowdown=True,
)
def unfused_modules(facts: Facts) -> Iterator[Finding]:
    if is_graph_module(facts):
        return  # prepare_fx fuses these patterns itself; FX graphs are read by the FX rules
    groups, how = unfused_groups(facts)
    if not groups:
        return
    first = facts.module(groups[0][0])
    assert first is not None
    types = {m.path: m.type for m in facts.modules or []}
    kinds = sorted({"-".join(base_type(types.get(p, "")) for p in g) for g in groups})
    followers = [p for g in groups for p in g[1:]]
    evidence: dict = {"groups": groups, "patterns": kinds, "order_from": how}
    profile = facts.profile
    if profile is not None and profile.total_ms > 0:
        times = {m.path: m.total_ms for m in profile.modules}
        follower_ms = sum(times.get(p, 0.0) for p in followers)
        evidence["unfused_followers_ms"] = round(follower_ms, 3)
        evidence["unfused_followers_share"] = round(follower_ms / profile.total_ms, 3)
    state = "were converted" if facts.modules_of_kind(F.QUANTIZED) else "are being quantized"
    yield unfused_modules.finding(
        f"{len(groups)} group(s) of modules {state} one by one instead of fused ({', '.join(kinds)}), starting at "
        f"`{' + '.join(groups[0])}`: each unfused ReLU or BatchNorm is an extra int8 pass over the activation with its "
        "own requantization, and an unfolded BatchNorm adds rounding error. Fuse them before prepare().",
        module=first.path,
        source=first.source,
        evidence=evidence,
        fix=fuse_fix(facts, groups),
    )
