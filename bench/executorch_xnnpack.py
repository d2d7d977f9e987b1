"""ExecuTorch + XNNPACK (`qdoctor check --deploy executorch-xnnpack`): fp32 vs int8 programs in the ExecuTorch
runtime for torchvision mobilenet_v2 and resnet18 (random weights, 224x224, batch 1), lowered by qdoctor's
ExecuTorch flow (XNNPACKQuantizer, XnnpackPartitioner) and timed together in interleaved rounds
(qdoctor.gather.rounds); and the cost of one op XNNPACK does not take: mobilenet_v2 with a grid_sample between
its int8 blocks, against the same network without it, and the portable op timed alone."""

from __future__ import annotations

import statistics
import sys

import torch
import torch.nn.functional as F
from common import machine, table, write_section
from torch import nn
from torchvision import models

from qdoctor import flows
from qdoctor.flows import Deployed, DeployInputs, Lowered
from qdoctor.gather import timing

BENCH_TIME = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
INPUTS = (torch.randn(1, 3, 224, 224),)
GRID = "aten_grid_sampler_2d_default"


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


def edge_cost(int8: Lowered, paired: timing.RoundsResult) -> str:
    """Per paired round, (int8 with the op - int8 without it - the op alone) / the edges the delegates convert: what
    crossing a partition edge costs beyond the portable op (the second partition's call included), as a median and
    IQR over rounds (never a difference of medians)."""
    converted = [e for e in int8.edges if e.converted]
    if not converted or "alone" not in paired.per_call or paired.errors:
        return "not measured (no converted edge, the op did not run alone, or a program raised)."
    rounds = zip(paired.per_call["with"], paired.per_call["without"], paired.per_call["alone"], strict=False)
    per_edge = [(w - n - a) * 1e3 / len(converted) for w, n, a in rounds]
    low, median, high = statistics.quantiles(per_edge, n=4)
    elements = sum(e.elements for e in converted) // len(converted)
    return (
        f"{median:.3f} ms per edge (IQR {low:.3f} to {high:.3f} over {len(per_edge)} paired rounds), "
        f"{len(converted)} converted edges of {elements} elements each "
        f"({median * 1e6 / max(elements, 1):.2f} ns per element)."
    )


def main() -> str:
    rows: list[list[object]] = []
    for name, build in (("mobilenet_v2", models.mobilenet_v2), ("resnet18", models.resnet18)):
        found, _, _ = measure(name, build())
        rows += found
    warped, with_op, with_programs = measure("mobilenet_v2 + grid_sample", Warped(models.mobilenet_v2(), warp=True))
    plain, _, plain_programs = measure("mobilenet_v2 split, no grid_sample", Warped(models.mobilenet_v2(), warp=False))
    rows += warped + plain
    alone = with_op.get(f"alone:{GRID}")
    # the two int8 programs (and the portable op alone) timed together in interleaved rounds: the op's cost is their
    # paired difference, and what is left of it once the op itself is taken out is the partition edges' cost (QD026)
    int8 = with_programs.programs[0]
    op_alone = next((n.run_alone for n in int8.not_delegated if n.op == GRID and n.run_alone is not None), None)
    variants = [timing.Variant("with", int8.run), timing.Variant("without", plain_programs.programs[0].run)]
    paired = timing.time_models(variants + ([timing.Variant("alone", op_alone)] if op_alone else []), BENCH_TIME)
    with_ms, without_ms = (paired.timing(key) for key in ("with", "without"))
    ratio = paired.ratio("with", "without")
    assert with_ms is not None and without_ms is not None and ratio is not None
    body = f"Machine: {machine()}\n\n"
    contended = sum("(contended)" in str(row[5]) for row in rows)
    body += (
        f"{contended} of {len(rows)} programs were timed while other processes used the cores (marked contended): "
        "those timings are noisy.\n\n"
        if contended
        else "No other process used the cores while the programs were timed (qdoctor.gather.contention).\n\n"
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
    body += f"\n\nQD026, the cost of a converted partition edge: {edge_cost(int8, paired)}"
    write_section("executorch", "ExecuTorch + XNNPACK: fp32 vs int8 in the runtime, and a non-delegated op", body)
    return body


if __name__ == "__main__":
    print(main())
