"""ExecuTorch + XNNPACK (`qdoctor check --deploy executorch-xnnpack`): fp32 vs int8 programs in the ExecuTorch
runtime for torchvision mobilenet_v2 and resnet18 (random weights, 224x224, batch 1), lowered by qdoctor's
ExecuTorch flow (XNNPACKQuantizer, XnnpackPartitioner) and timed together in interleaved rounds
(qdoctor.gather.rounds); and the cost of one op XNNPACK does not take: mobilenet_v2 with a grid_sample between
its int8 blocks, against the same network without it, and the portable op timed alone."""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from common import machine, table, write_section
from torch import nn
from torchvision import models

from qdoctor import flows
from qdoctor.flows import Deployed, DeployInputs
from qdoctor.gather import timing

BENCH_TIME = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
INPUTS = (torch.randn(1, 3, 224, 224),)


class Warped(nn.Module):
    """mobilenet_v2 with a fixed affine grid_sample after its 7th block (32 channels, 28x28)."""

    def __init__(self, net: nn.Module, warp: bool) -> None:
        super().__init__()
        self.head, self.tail, self.classifier, self.warp = net.features[:7], net.features[7:], net.classifier, warp
        theta = torch.tensor([[[0.95, 0.05, 0.0], [-0.05, 0.95, 0.0]]])
        self.register_buffer("grid", F.affine_grid(theta, [1, 32, 28, 28], align_corners=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        if self.warp:
            x = F.grid_sample(x, self.grid, align_corners=False)
        x = F.adaptive_avg_pool2d(self.tail(x), 1).flatten(1)
        return self.classifier(x)


def measure(name: str, model: nn.Module) -> tuple[list[list[object]], dict[str, float], Deployed]:
    torch.manual_seed(0)
    flow = flows.deploy_flow("executorch-xnnpack")
    deployed = flow.deploy(DeployInputs(model.eval(), None, (), INPUTS, [INPUTS], time_ops=True))
    result = timing.time_models([timing.Variant(p.role, p.run) for p in deployed.programs], BENCH_TIME)
    ratio = result.ratio("float", "int8")
    rows, medians = [], {}
    for program in deployed.programs:
        measured = result.timing(program.role)
        assert measured is not None
        medians[program.role] = measured.median_ms
        left = sorted({n.op for n in program.not_delegated if n.computes})
        rows.append(
            [
                name,
                program.role,
                f"{len(program.program) / 1e6:.2f}",
                program.partitions,
                ", ".join(left) or "-",
                f"{measured.median_ms:.2f} ± {measured.iqr_ms:.2f}" + (" (contended)" if measured.contended else ""),
                f"{ratio.value:.2f}x ({ratio.low:.2f}-{ratio.high:.2f})" if ratio and program.role == "int8" else "",
            ]
        )
        for node in program.not_delegated:
            if node.run_alone is not None and program.role == "int8":
                medians[f"alone:{node.op}"] = timing.time_callable(node.run_alone, BENCH_TIME).median_ms
    return rows, medians, deployed


def main() -> str:
    rows: list[list[object]] = []
    for name, build in (("mobilenet_v2", models.mobilenet_v2), ("resnet18", models.resnet18)):
        found, _, _ = measure(name, build())
        rows += found
    warped, with_op, with_programs = measure("mobilenet_v2 + grid_sample", Warped(models.mobilenet_v2(), warp=True))
    plain, _, plain_programs = measure("mobilenet_v2 split, no grid_sample", Warped(models.mobilenet_v2(), warp=False))
    rows += warped + plain
    alone = with_op.get("alone:aten_grid_sampler_2d_default")
    # the two int8 programs timed together in interleaved rounds: the op's cost is their paired difference
    paired = timing.time_models(
        [
            timing.Variant("with", with_programs.programs[0].run),
            timing.Variant("without", plain_programs.programs[0].run),
        ],
        BENCH_TIME,
    )
    with_ms, without_ms = (paired.timing(key) for key in ("with", "without"))
    ratio = paired.ratio("with", "without")
    assert with_ms is not None and without_ms is not None and ratio is not None
    body = f"Machine: {machine()}\n\n"
    body += (
        "The machine was busy (other jobs running): timings are contended and noisy; the lead re-measures quietly.\n\n"
    )
    body += table(
        ["model", "program", ".pte MB", "partitions", "not delegated", "ms per call (median ± IQR)", "int8 speedup"],
        rows,
    )
    body += (
        f"\n\nThe grid_sample (32x28x28), the two int8 programs timed together in interleaved rounds: "
        f"{with_ms.median_ms:.2f} ms with it vs {without_ms.median_ms:.2f} ms without "
        f"({ratio.value:.2f}x, {ratio.low:.2f}-{ratio.high:.2f}); the portable op timed alone in the runtime: "
        + (f"{alone:.2f} ms." if alone is not None else "not measured.")
        + f" `python bench/executorch_xnnpack.py {BENCH_TIME}` (ExecuTorch + XNNPACK, random weights, batch 1, 224x224)."
    )
    write_section("executorch", "ExecuTorch + XNNPACK: fp32 vs int8 in the runtime, and a non-delegated op", body)
    return body


if __name__ == "__main__":
    print(main())
