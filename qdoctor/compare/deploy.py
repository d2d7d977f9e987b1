"""`qdoctor compare model.py --deploy NAME`: the recipes' int8 models lowered for a deployment runtime and timed
there against the lowered float model. The deploying flow lowers (``Flow.lower``, what `check --deploy` lowers
with) and quantizes with the target's own quantizer (``Flow.quantize_for_target``); qdoctor.gather.deploy reads the
delegation of each program and times them together in interleaved rounds. A recipe whose model the runtime cannot
take (not an exported graph, or its lowering raised) says why, in one line.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from qdoctor import flows
from qdoctor.compare.result import Candidate, DeployComparison, DeployedRecipe
from qdoctor.facts.deploy import FLOAT, INT8
from qdoctor.facts.location import exception_line
from qdoctor.flows import DeployInputs, Lowered, Recipe
from qdoctor.gather.deploy import lowered_program, time_lowered
from qdoctor.introspect.kinds import eager_module

OWN_RECIPE = "pt2e-{backend}"  # the target's own quantizer, named like compare's PT2E recipes ("pt2e-xnnpack")
FLOAT_KEY = "float program"


def _lower(flow: flows.Flow, entry: DeployedRecipe, model: nn.Module, inputs: tuple[Any, ...]) -> Lowered | None:
    try:
        return flow.lower(INT8, model, inputs)
    except Exception as exc:  # the recipe's own failure: said in one line, the others go on
        entry.reason = f"lowering raised {exception_line(exc, 300)}"
        return None


def deploy_recipes(
    target: str,
    float_model: nn.Module,
    inputs: tuple[Any, ...],
    batches: list[tuple[Any, ...]],
    measured: list[tuple[Candidate, Recipe, flows.Built]],
    bench_time: float,
    progress: Callable[[str], None] = lambda _: None,
) -> DeployComparison:
    """``measured``: compare's built recipes (fp32 among them); their models are lowered as they are built."""
    flow = flows.deploy_flow(target)
    comparison = DeployComparison(target)
    progress(f"{target}: lowering the float model")
    try:
        float_lowered = flow.lower(FLOAT, copy.deepcopy(float_model).eval(), inputs)
    except ImportError as exc:  # the runtime's optional extra is not installed
        comparison.unavailable = f"{target} needs its runtime, which is not installed here ({exception_line(exc)})"
        return comparison
    except Exception as exc:  # nothing to time the int8 programs against
        comparison.unavailable = f"lowering the float model raised {exception_line(exc, 300)}"
        return comparison
    lowered: dict[str, Lowered] = {FLOAT_KEY: float_lowered}
    entries: list[DeployedRecipe] = []
    progress(f"{target}: quantizing with its own quantizer and lowering")
    try:
        own, quantizer = flow.quantize_for_target(DeployInputs(float_model, None, (), inputs, batches))
        entry = DeployedRecipe(OWN_RECIPE.format(backend=target.rsplit("-", 1)[-1]), f"static int8, PT2E {quantizer}")
        program = _lower(flow, entry, own, inputs)
    except Exception as exc:
        entry = DeployedRecipe(OWN_RECIPE.format(backend=target.rsplit("-", 1)[-1]), "the target's own quantizer")
        entry.reason, program = f"quantizing raised {exception_line(exc, 300)}", None
    entries.append(entry)
    if program is not None:
        lowered[entry.recipe] = program
    for candidate, recipe, built in measured:
        if recipe.flow is None:
            continue  # fp32: the float program above
        entry = DeployedRecipe(candidate.recipe, candidate.title)
        entries.append(entry)
        if not recipe.flow.kind.exported_graph:
            entry.reason = f"not an exported graph: {target} lowers torch.export graphs quantized by a PT2E quantizer"
            continue
        progress(f"{target}: lowering {candidate.recipe}")
        program = _lower(flow, entry, eager_module(built.model), inputs)  # the graph behind torch.compile
        if program is not None:
            lowered[entry.recipe] = program
    progress(f"{target}: timing {len(lowered)} programs in interleaved rounds")
    result = time_lowered(lowered, bench_time)
    comparison.float_program = lowered_program(float_lowered, None)
    comparison.float_program.latency = result.timing(FLOAT_KEY)
    for entry in entries:
        if entry.recipe not in lowered:
            continue
        entry.program = lowered_program(lowered[entry.recipe], None)
        entry.program.latency = result.timing(entry.recipe)
        entry.speedup = result.ratio(FLOAT_KEY, entry.recipe)
        if entry.recipe in result.errors:
            entry.reason = f"running it raised {exception_line(result.errors[entry.recipe], 300)}"
    comparison.recipes = entries
    comparison.runtime = flow.kind.title
    return comparison
