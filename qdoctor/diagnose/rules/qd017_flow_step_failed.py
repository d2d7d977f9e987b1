"""QD017 flow-step-failed: a step of a quantization flow raised (torch.export, prepare_pt2e, convert_pt2e, torchao
quantize_, prepare_fx, or an import that a torch/torchao release moved), mapped from its message to the cause."""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor.diagnose import static_steps as static
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.flow_causes import FLOW_CAUSES, UNRECOGNIZED, diagnose, failed_flow_steps, moved_module_hint
from qdoctor.diagnose.registry import from_text, rule
from qdoctor.facts import CrashInfo, Facts, ModuleInfo, SourceLocation
from qdoctor.facts import report as R


@rule(
    "QD017",
    "flow-step-failed",
    Severity.ERROR,
    "a step of a quantization flow raised (export, prepare_pt2e, convert_pt2e, quantize_, a moved import): cause and fix",
    needs=("flow",),
    owns=FLOW_CAUSES,
)
def flow_step_failed(facts: Facts) -> Iterator[Finding]:
    flow = facts.flow
    assert flow is not None
    version = f"torch {facts.environment.torch_version}" + (
        f", torchao {flow.torchao_version}" if flow.torchao_version else ""
    )
    for _crash, failure in failed_flow_steps(facts):
        source = (
            SourceLocation(failure.file, failure.line, failure.code or "") if failure.file and failure.line else None
        )
        known = failure.cause != UNRECOGNIZED
        message = (
            f"{failure.step} failed ({failure.error}): {failure.explanation}"
            if known
            else f"{failure.step} failed ({failure.error}): not a known quantization-flow failure; see its location."
        )
        evidence: dict[str, object] = {
            "step": failure.step,
            "cause": failure.cause,
            "error": failure.error,
            "versions": version,
        }
        pairs = _layer_pairs(facts, failure.layers)
        if pairs:
            named = "; ".join(" + ".join(f"`{m.path}` ({_described(m)})" for m in pair) for pair in pairs)
            message += f" The pair in this model: {named}."
            evidence["layers"] = [[m.path for m in pair] for pair in pairs]
        yield flow_step_failed.finding(
            message,
            module=pairs[0][0].path if pairs else None,
            source=source,
            evidence=evidence,
            fix=failure.fix,
        )


def _described(module: ModuleInfo) -> str:
    groups = module.params.get("groups")
    return module.type + (f", groups {groups}" if isinstance(groups, int) and groups > 1 else "")


def _layer_pairs(facts: Facts, layers: tuple[str, ...], limit: int = 3) -> list[tuple[ModuleInfo, ...]]:
    """The runs of leaf modules of the types a failed step was working on (a fusion's ConvTranspose, BatchNorm),
    in module order: each layer followed by the next leaf of the next type."""
    if len(layers) < 2:
        return []
    leaves = [m for m in facts.modules or [] if m.is_leaf and m.path]
    pairs: list[tuple[ModuleInfo, ...]] = []
    for i, first in enumerate(leaves):
        if first.type.rstrip("123d") != layers[0]:
            continue
        rest = [m for m in leaves[i + 1 : i + len(layers)] if m.type.rstrip("123d") in layers[1:]]
        if len(rest) == len(layers) - 1:
            pairs.append((first, *rest))
    return pairs[:limit]


@from_text("QD017")
def missing_names_in_text(facts: Facts) -> Iterator[Finding]:
    """The report's text imports or calls a name the installed torch does not have (removed, moved, never there):
    certain from the text alone, whatever else the code does."""
    seen: set[str] = set()
    for step in static.steps(facts, R.MISSING_NAME):
        if step.detail in seen:
            continue
        seen.add(step.detail)
        module, _, name = step.detail.partition(":")
        hint = moved_module_hint(f"{module}.{name}", facts.environment.torch_version)
        if hint is not None:
            error, explanation, fix = f"ModuleNotFoundError: No module named '{module}.{name}'", hint + ".", ""
        else:
            crash = CrashInfo("ImportError", f"cannot import name '{name}' from '{module}'", "report")
            failure = diagnose(
                crash, facts.environment.torch_version, facts.flow.torchao_version if facts.flow else None
            )
            if failure is None or failure.cause == UNRECOGNIZED:
                explanation = f"torch {facts.environment.torch_version} has no {module}.{name}"
                fix = ""
            else:
                explanation, fix = failure.explanation, failure.fix
            error = f"ImportError: cannot import name '{name}' from '{module}'"
        yield flow_step_failed.finding(
            f"`{step.code}` (line {step.line}) uses {module}.{name}, which torch {facts.environment.torch_version} "
            f"does not have: {explanation.rstrip('.')} (static: read, not run; it raises {error}).",
            source=static.where(step, facts),
            evidence=static.evidence(step, error=error, certain=True),
            fix=fix,
        )
