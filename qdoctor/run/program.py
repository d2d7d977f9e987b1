"""`qdoctor check program.pte`: a deployment runtime's serialized program as the target. It is read and loaded as it
is (qdoctor.load.program), its delegation read and its forward timed in the runtime (qdoctor.gather.deploy), and the
rules run over those facts. There is no torch model: no module tree, graph, trace, profile, float baseline or
numerics, so every rule that needs them does not apply (and says why); no fixes are verified (nothing to rebuild).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qdoctor import __version__
from qdoctor.diagnose.registry import run_rules
from qdoctor.facts import Facts, FlowInfo
from qdoctor.report.deploy import deploy_notes
from qdoctor.report.model import Report

# the facts of a torch model that a serialized program does not have, and why
NOT_IN_A_PROGRAM = {
    "modules": "a .pte holds no torch module tree",
    "float_modules": "a .pte holds one program: no float baseline",
    "trace": "a .pte is not traced: it runs in its own runtime",
    "profile": "the ExecuTorch runtime of the pip package gives no per-op profile",
    "float_profile": "a .pte holds one program: no float baseline",
    "benchmark": "a .pte holds one program: no float baseline to time it against (its latency: the deployment note)",
    "size": "a .pte's size is its program's bytes (in deploy); no float baseline to compare it with",
    "numerics": "a .pte holds one program: no float baseline to compare its outputs with",
    "graph": "a .pte holds no torch graph, only the runtime's instructions (read into deploy)",
}


def program_report(spec: str, options: Any, progress: Callable[[str], None] = lambda _: None) -> Report:
    """``options``: the check's CheckOptions. Raises TargetError (one line) when the file cannot be read."""
    import torch

    from qdoctor.gather.deploy import program_deployment
    from qdoctor.gather.environment import gather_environment
    from qdoctor.load.program import load_program

    progress(f"reading {spec}")
    loaded = load_program(spec, options.gather.deploy, time_ops=options.gather.bench)
    environment = gather_environment(torch.backends.quantized.engine, torch.get_num_threads())
    if options.gather.bench:
        progress(f"timing {spec} in its runtime")
    deploy = program_deployment(loaded.deployed, options.gather.bench, options.gather.bench_time)
    subject = deploy.subject()
    facts = Facts(
        target=loaded.target,
        environment=environment,
        # the flow that made it: a lowered program, converted when its kernels quantize outside the delegates
        flow=FlowInfo(
            kind=loaded.flow.kind,
            stage="converted" if subject is not None and subject.quantized_ops else None,
            saved_format=loaded.flow.program_suffix,
        ),
        deploy=deploy,
        unavailable=dict(NOT_IN_A_PROGRAM),
        not_applicable=list(NOT_IN_A_PROGRAM),
    )
    findings, skipped = run_rules(facts, options.select, options.ignore, options.per_module_ignores)
    return Report(
        facts=facts,
        findings=findings,
        skipped=skipped,
        notes=[f"inputs: {facts.target.inputs_inferred}", *deploy_notes(facts)],
        qdoctor_version=__version__,
    )
