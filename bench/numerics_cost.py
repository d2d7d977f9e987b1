#!/usr/bin/env python3
"""What per-layer numerics (qdoctor/gather/layer_numerics.py) cost on torchvision ResNets (random weights).

    python bench/numerics_cost.py                          # resnet18 and resnet50, 1x3x224x224, writes RESULTS.md
    python bench/numerics_cost.py --size 64 --repeats 1 --models resnet18 --no-write   # smoke run

Each model is quantized the usual eager way (torchvision's quantizable ResNet: fuse_model, x86 qconfig, 2 random
calibration batches, convert). Timed, in wall seconds (median ± IQR over --repeats): one forward of the int8 model,
the output SQNR alone (what `qdoctor check` measured before), and the per-layer numerics with the example only and
with 8 calibration batches (capped by layer_numerics.ELEMENT_BUDGET, the table says how many it took).
"""

from __future__ import annotations

import argparse
import sys

import torch
from common import machine, table, wall_times, write_section

from qdoctor.gather import layer_numerics, numerics
from qdoctor.introspect.state import preserved_torch_state, quantized_engine, quiet


def build(arch: str, size: int) -> tuple[torch.nn.Module, torch.nn.Module, tuple[torch.Tensor, ...]]:
    import copy

    import torchvision
    from torch.ao import quantization as tq

    torch.manual_seed(0)
    fp32 = getattr(torchvision.models.quantization, arch)(weights=None, quantize=False).eval()
    model = copy.deepcopy(fp32)
    model.fuse_model()
    model.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(model)
    with torch.no_grad():
        for _ in range(2):
            prepared(torch.randn(1, 3, size, size))
    return fp32, tq.convert(prepared), (torch.randn(1, 3, size, size),)


def measure(arch: str, size: int, repeats: int) -> list[list[object]]:
    fp32, int8, inputs = build(arch, size)
    calibration = [(torch.randn(1, 3, size, size),) for _ in range(8)]
    result: dict[str, object] = {}

    def forward() -> None:
        with torch.no_grad():
            int8(*inputs)

    def output_sqnr() -> None:
        numerics.sqnr_db(numerics.outputs(fp32, inputs), numerics.outputs(int8, inputs))

    def per_layer(batches: list[tuple[torch.Tensor, ...]]) -> None:
        result["value"] = layer_numerics.layer_numerics(int8, fp32, inputs, batches)

    timed = {
        "forward": wall_times(forward, repeats),
        "output SQNR": wall_times(output_sqnr, repeats),
        "per layer, example": wall_times(lambda: per_layer([]), repeats),
        "per layer, +8 calibration": wall_times(lambda: per_layer(calibration), repeats),
    }
    found = result["value"]
    assert isinstance(found, tuple)
    layers, seen, calibration_seen = found
    worst = min((x.isolated_sqnr_db for x in layers if x.isolated_sqnr_db is not None), default=None)
    print(f"{arch}: {len(layers)} layers, worst isolated {worst} dB", file=sys.stderr)
    rows: list[list[object]] = [[arch, what, f"{m:.2f} ± {iqr:.2f}", repeats] for what, (m, iqr, _) in timed.items()]
    rows.append([arch, f"({len(layers)} layers; {seen} batches, {calibration_seen} calibration)", "", ""])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    where = machine()
    rows = []
    with preserved_torch_state(), quantized_engine("x86"), quiet():
        for arch in args.models:
            rows += measure(arch, args.size, args.repeats)
    body = "\n".join(
        [
            f"Machine: {where}",
            "",
            f"torchvision quantizable ResNets, random weights, 1x3x{args.size}x{args.size}, x86 engine, eager static "
            "int8. Wall seconds per call, median ± IQR over the repeats.",
            "",
            table(["model", "what", "seconds", "repeats"], rows),
        ]
    )
    print(body)
    if not args.no_write:
        write_section("numerics_cost", "What per-layer numerics cost (qdoctor check)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
