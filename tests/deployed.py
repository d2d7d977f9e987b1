"""Checks with `--deploy executorch-xnnpack`, shared by the tests of the ExecuTorch flow and its rules: lowering is
slow (tens of seconds a fixture on 2 cores), so each fixture is checked once per session, with tiny bench times."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
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


class _Warp(torch.nn.Module):
    """Two small convolutions, with a grid_sample between them when ``warp`` (XNNPACK does not take it)."""

    def __init__(self, warp: bool) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)
        self.warp = warp
        theta = torch.tensor([[[0.9, 0.1, 0.0], [-0.1, 0.9, 0.0]]])
        self.register_buffer("grid", torch.nn.functional.affine_grid(theta, [1, 8, 16, 16], align_corners=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(x))
        if self.warp:
            x = torch.nn.functional.grid_sample(x, self.grid, align_corners=False)
        return self.b(x)


# name -> (grid_sample between the convolutions, quantized with XNNPACKQuantizer, lowered with XnnpackPartitioner)
PTE_PROGRAMS = {
    "delegated": (False, True, True),  # int8, one XNNPACK partition: healthy
    "grid_sample": (True, True, True),  # int8, grid_sample left to the portable kernels: two partitions
    "not_lowered": (False, True, False),  # int8, no delegate: quantize/dequantize around portable fp32 kernels
    "float_not_lowered": (False, False, False),  # float, no delegate: nothing quantized to judge
}


def build_pte(name: str, folder: Path) -> Path:
    """One of PTE_PROGRAMS serialized to ``folder/<name>.pte`` (tiny models with random weights, built at test time:
    no binary program is committed)."""
    import importlib

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    importlib.import_module("executorch.kernels.quantized")  # q/dq left outside a delegate serialize only with these
    warp, quantize, lower = PTE_PROGRAMS[name]
    torch.manual_seed(0)
    model: torch.nn.Module = _Warp(warp).eval()
    inputs = (torch.randn(1, 3, 16, 16),)
    if quantize:
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(torch.export.export(model, inputs).module(), quantizer)
        prepared(*inputs)
        model = convert_pt2e(prepared)
    edge = to_edge_transform_and_lower(
        torch.export.export(model, inputs), partitioner=[XnnpackPartitioner()] if lower else None
    )
    path = folder / f"{name}.pte"
    path.write_bytes(edge.to_executorch().buffer)
    return path
