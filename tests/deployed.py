"""Checks with `--deploy executorch-xnnpack`, shared by the tests of the ExecuTorch flow and its rules: lowering is
slow (tens of seconds a fixture on 2 cores), so each fixture is checked once per session, with tiny bench times."""

from __future__ import annotations

import functools

import pytest
from conftest import fixture_path

from qdoctor.facts.deploy import FLOAT, INT8, Deployment, LoweredProgram, OpDelegation, PartitionEdge, ScriptLine
from qdoctor.facts.measurement import Timing

TARGET = "executorch-xnnpack"
GRID_SAMPLE = "fixtures/executorch/grid_sample_not_delegated.py"


def need_executorch() -> None:
    pytest.importorskip("executorch.runtime", reason="executorch is not installed: pip install '.[executorch]'")


@functools.cache
def deployed_report(name: str):
    from qdoctor.gather import GatherOptions
    from qdoctor.run.check import CheckOptions, check

    options = CheckOptions(
        gather=GatherOptions(bench=True, bench_time=0.05, profile=False, layer_numerics=False, deploy=TARGET),
        verify=False,
    )
    return check(str(fixture_path(name)), options)


def ms(value: float) -> Timing:
    return Timing(median_ms=value, iqr_ms=value / 20, runs=7, number_per_run=10, num_threads=1, noisy=False)


def grid_sample_deployment(partitions: int = 2, timed: bool = True) -> Deployment:
    """A hand-built deployment like the fixture's: grid_sample left to the portable kernels between two partitions."""
    left = OpDelegation(
        "aten_grid_sampler_2d_default",
        delegated=0,
        not_delegated=1,
        sources=[ScriptLine(33, "x = F.grid_sample(x, self.grid, align_corners=False)")],
        elements=32768,
    )
    glue = OpDelegation("getitem", delegated=0, not_delegated=2, computes=False)
    constant = OpDelegation("aten_full_default", delegated=0, not_delegated=1, computes=False)
    conv = OpDelegation("aten_convolution_default", delegated=7, not_delegated=0)
    edges = [PartitionEdge("out", left.op, 32768, True), PartitionEdge("in", left.op, 32768, True)]
    int8 = LoweredProgram(INT8, 32168, partitions, 63, 4, [glue, left, constant, conv], edges if partitions > 1 else [])
    float_ = LoweredProgram(FLOAT, 40232, partitions, 31, 3, [glue, left, conv], [])
    if timed:
        int8.latency, float_.latency = ms(1.23), ms(1.33)
    return Deployment(TARGET, "XNNPACK", "ExecuTorch 1.5.1", "XNNPACKQuantizer", programs=[int8, float_])
