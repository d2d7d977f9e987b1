"""A serialized program of a deployment runtime as TARGET (``qdoctor check program.pte``): no script runs and no torch
model is made; the flow whose ``program_suffix`` the file has reads it and loads it in its runtime
(qdoctor/flows/_pte.py for ExecuTorch). Every way it cannot be read is one line (TargetError: exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from qdoctor import flows
from qdoctor.errors import TargetError
from qdoctor.facts import INPUTS_SAVED, Target, TensorInfo
from qdoctor.flows import Deployed, Flow


@dataclass
class LoadedProgram:
    target: Target
    flow: Flow  # the flow that reads it (its deployment target)
    deployed: Deployed  # the program, loaded in its runtime, with the inputs it runs on


def load_program(spec: str, deploy: str | None = None, time_ops: bool = False) -> LoadedProgram:
    """Read and load ``spec``. ``deploy``: the `--deploy` target asked for, which must be the program's own;
    ``time_ops``: the ops its delegates leave out are rebuilt alone, to be timed (Flow.read_program)."""
    flow = flows.program_flow(spec)
    path = Path(spec)
    if flow is None:
        raise TargetError(f"{spec}: not a program file of a deployment runtime")
    if deploy is not None and deploy != flow.deploy_target:
        raise TargetError(f"{spec} is a {flow.deploy_target} program: --deploy {deploy} cannot read it")
    if path.is_dir():
        raise TargetError(f"{spec} is a directory; pass a {flow.program_suffix} file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TargetError(f"cannot read {spec}: {exc.strerror or exc}") from None
    try:
        deployed = flow.read_program(data, time_ops)
    except ImportError as exc:  # the runtime is not installed: the flow's message says which extra brings it
        raise TargetError(f"{spec}: {exc}") from None
    except ValueError as exc:
        raise TargetError(f"{spec}: {exc}") from None
    target = Target(
        spec=spec,
        file=None,
        subject_name=path.name,
        float_name=None,
        inputs_name=None,
        inputs=[TensorInfo(str(t.dtype), list(t.shape), False) for t in deployed.inputs if isinstance(t, torch.Tensor)],
    )
    target.inputs_inferred = "random values of the shapes and dtypes the program records for its inputs"
    target.inputs_origin = INPUTS_SAVED
    return LoadedProgram(target, flow, deployed)
