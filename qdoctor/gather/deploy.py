"""``--deploy NAME``: the deploying flow lowers the int8 model and its float baseline for its runtime and loads them
(qdoctor/flows/); this stage reads what was delegated (with the user's line of each op left out), times both
programs in the runtime with the paired measurement layer (qdoctor.gather.rounds) and fills ``Facts.deploy``."""

from __future__ import annotations

from collections import defaultdict

from qdoctor import flows
from qdoctor.facts import Facts
from qdoctor.facts.deploy import INT8, Deployment, LoweredProgram, OpDelegation, ScriptLine
from qdoctor.facts.location import exception_line
from qdoctor.flows import Deployed, DeployInputs, Lowered
from qdoctor.gather import timing
from qdoctor.gather.graph import parse_source
from qdoctor.load.target import LoadedTarget


def deploy_inputs(loaded: LoadedTarget, facts: Facts, time_ops: bool = False) -> DeployInputs:
    """The script's converted PT2E model is lowered as it is; any other subject is quantized again from the float
    baseline by the target's own quantizer."""
    flow = facts.flow
    exported = flow is not None and flow.kind.exported_graph and flow.stage == "converted"
    batches, _ = flows.calibration_batches(None, loaded.inputs)
    return DeployInputs(
        float_model=loaded.float_baseline,
        subject=loaded.subject if exported else None,
        subject_quantizers=tuple(flow.quantizers) if exported and flow is not None else (),
        inputs=loaded.inputs,
        batches=batches,
        time_ops=time_ops,
    )


def lowered_program(lowered: Lowered, user_file: str | None) -> LoweredProgram:
    ops: dict[str, OpDelegation] = {}
    for op, count in lowered.delegated.items():
        ops[op] = OpDelegation(op, delegated=count, not_delegated=0)
    sources: dict[str, list[ScriptLine]] = defaultdict(list)
    for node in lowered.not_delegated:
        row = ops.setdefault(node.op, OpDelegation(node.op, delegated=0, not_delegated=0))
        row.not_delegated += 1
        row.elements += node.elements
        row.computes = row.computes and node.computes if row.not_delegated > 1 else node.computes
        found = parse_source(node.stack_trace, user_file)  # a frame of the user's file only
        source = ScriptLine(found.line, found.code or "") if found is not None else None
        if source is not None and source not in sources[node.op]:
            sources[node.op].append(source)
    for op, lines in sources.items():
        ops[op].sources = lines
    return LoweredProgram(
        role=lowered.role,
        program_bytes=len(lowered.program),
        partitions=lowered.partitions,
        delegated_nodes=sum(lowered.delegated.values()),
        not_delegated_nodes=len(lowered.not_delegated),
        ops=sorted(ops.values(), key=lambda o: (-o.not_delegated, o.op)),
        edges=lowered.edges,
        quantized_ops=lowered.quantized_ops,
        partitions_by_backend=dict(lowered.partitions_by_backend),
    )


def deployment(deployed: Deployed, user_file: str | None) -> Deployment:
    """The facts of what the flow deployed (untimed)."""
    return Deployment(
        target=deployed.target,
        backend=deployed.backend,
        runtime=deployed.runtime,
        quantizer=deployed.quantizer,
        quantizer_made_for=deployed.quantizer_made_for,
        programs=[lowered_program(p, user_file) for p in deployed.programs],
        from_pte=deployed.from_program,
        unavailable=dict(deployed.unavailable),
    )


def time_lowered(programs: dict[str, Lowered], bench_time: float) -> timing.RoundsResult:
    """Programs timed together in interleaved rounds in their runtime, by key (their ratios from paired rounds)."""
    return timing.time_models([timing.Variant(key, p.run) for key, p in programs.items()], bench_time)


def time_programs(deployed: Deployed, facts: Deployment, bench_time: float) -> None:
    """Both programs timed together in interleaved rounds in the runtime; the float/int8 ratio from paired rounds."""
    result = time_lowered({p.role: p for p in deployed.programs}, bench_time)
    for program in facts.programs:
        program.latency = result.timing(program.role)
        if program.role in result.errors:
            facts.unavailable[f"latency_{program.role}"] = str(result.errors[program.role])[:300]
    if len(deployed.programs) == 2:
        facts.speedup = result.ratio(deployed.programs[1].role, deployed.programs[0].role)
    # the program the rules judge: the int8 one, or a .pte's only program whatever its role (Deployment.subject)
    int8 = (
        deployed.programs[0] if deployed.from_program else next((p for p in deployed.programs if p.role == INT8), None)
    )
    for node in int8.not_delegated if int8 is not None else []:
        if node.run_alone is not None and node.op not in facts.op_cost:  # one node of each op: the cost per node
            facts.op_cost[node.op] = timing.time_callable(node.run_alone, bench_time)


def gather_deployment(target: str, loaded: LoadedTarget, facts: Facts, bench: bool, bench_time: float) -> Deployment:
    try:
        deployed = flows.deploy_flow(target).deploy(deploy_inputs(loaded, facts, time_ops=bench))
    except Exception as exc:  # the deployment is still the question: the rules say what they cannot check
        reason = exception_line(exc)[:400]
        return Deployment(target, backend="", runtime="", quantizer=None, unavailable={"lowering": reason})
    found = deployment(deployed, loaded.target.file)
    if bench:
        time_programs(deployed, found, bench_time)
    else:
        found.unavailable["latency"] = "timing disabled (--no-bench)"
    return found


# what a serialized program does not hold (qdoctor/flows/_pte.py says why), in the report's words
NOT_IN_A_PROGRAM = {
    "source_lines": "a .pte holds no stack traces of the export: the user's line of an op is unknown",
    "partition_edges": "partition edges are not read from a .pte (a delegate call's inputs and outputs are one list)",
    "delegated_ops": "the ops inside a delegate are not read from a .pte (its payload is the backend's own format)",
}


def program_deployment(deployed: Deployed, bench: bool, bench_time: float) -> Deployment:
    """The facts of a program read from a file (``qdoctor check program.pte``), timed alone in its runtime."""
    found = deployment(deployed, None)
    found.unavailable.update(NOT_IN_A_PROGRAM)
    if bench:
        time_programs(deployed, found, bench_time)
    else:
        found.unavailable["latency"] = "timing disabled (--no-bench)"
    return found
