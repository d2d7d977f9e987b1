"""QD012 / QD018 / QD019: what a converted PT2E model costs when it is not lowered, what the wrong quantizer costs,
and what an op left in fp32 between quantized ops costs.

    PYTHONPATH=$PWD python bench/flows_pt2e.py [--rounds 5] [--min-run-time 0.5] [--size 224]

Models, batch 1, random weights, 4 random calibration batches, quantized with torch.export + torchao's
prepare_pt2e/convert_pt2e:
  - the seed 004 network (two convs): fp32 eager and compiled; the converted PT2E x86 model run eagerly (QD012),
    compiled without freezing (QD012) and with torch._inductor.config.freezing = True (the fix); the same network
    quantized with the XNNPACK-style quantizer (signed int8 activations), eagerly and compiled (QD018);
  - the same network without its MaxPool, x86 vs XNNPACK-style quantizer, compiled with freezing (QD018);
  - a conv block with a SiLU between two convolutions (as fixtures/pt2e_fp32_between.py, QD019) against the same
    block with a ReLU, both x86 int8 compiled with freezing.
All variants of a network are timed in interleaved rounds (bench/flows_common.interleaved) so load from other jobs
falls on all of them alike. The first call of each compiled model is one wall-clock measurement (it compiles).
Writes bench/flows_results.md (section "pt2e").
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path

# Every torch.compile below must really compile with the settings it is given: no FX graph / AOT autograd cache
# hits from an earlier compile of the same graph with other settings.
os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from flows_common import clock_text, interleaved, machine, parse_args, row, write_section


def seed004_net(maxpool: bool = True):
    import torch
    from torch import nn

    torch.manual_seed(0)
    middle = (
        [nn.MaxPool2d(2), nn.Conv2d(64, 128, 3, padding=1)] if maxpool else [nn.Conv2d(64, 128, 3, padding=1, stride=2)]
    )
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.ReLU(),
        *middle,
        nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(128, 10),
    ).eval()


def activation_block(activation: str):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 64, 3, padding=1)
            self.act = nn.SiLU() if activation == "silu" else nn.ReLU()
            self.mix = nn.Conv2d(64, 64, 3, padding=1)
            self.head = nn.Conv2d(64, 64, 3, padding=1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = self.head(self.mix(self.act(self.stem(x))))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    return Block().eval()


def quantize_pt2e(model, example, quantizer):
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    torch.manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.randn_like(example[0]))
    return convert_pt2e(prepared)


def x86_quantizer():
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    return xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())


def xnnpack_quantizer():
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config())


def compiled(model, example, freezing: bool):
    """torch.compile with Inductor freezing on or off; freezing is read when the model compiles (its first call)."""
    import torch
    import torch._inductor.config as inductor_config

    inductor_config.freezing = freezing
    fn = torch.compile(copy.deepcopy(model))
    start = time.perf_counter()
    with torch.no_grad():
        fn(*example)
    return fn, time.perf_counter() - start


def measure(title: str, variants: list, example, rounds: int, min_run_time: float, clock: str) -> list[str]:
    """variants: (label, build) where build() returns (callable model, first-call seconds or None). The first one is
    the fp32 reference. A variant that raises is reported as such."""
    import torch

    runs, firsts, failures = {}, {}, {}
    for label, build in variants:
        try:
            model, first = build()
            with torch.no_grad():
                model(*example)  # a model that raises when run is a result too
        except Exception as exc:
            from qdoctor.facts.location import first_line

            failures[label] = f"raises {type(exc).__name__}: {first_line(str(exc))[:160]}"
            continue

        def run(model=model):
            with torch.no_grad():
                model(*example)

        runs[label], firsts[label] = run, first
    timings = interleaved(runs, rounds, min_run_time, clock)
    base = timings[variants[0][0]]
    column = clock_text(clock, rounds, min_run_time)[1]
    rows = [
        f"**{title}**",
        "",
        f"| variant | {column} | vs fp32 eager | rounds | first call s (includes compile) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, _ in variants:
        if label in failures:
            rows.append(f"| {label} | {failures[label]} | - | - | - |")
        else:
            rows.append(row(label, timings[label], base, firsts[label]))
    return rows


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv, size=(int, 224))
    import torch

    where = machine()
    example = (torch.randn(1, 3, args.size, args.size),)
    tables = []

    fp32 = seed004_net()
    x86 = quantize_pt2e(copy.deepcopy(fp32), example, x86_quantizer())
    xnn = quantize_pt2e(copy.deepcopy(fp32), example, xnnpack_quantizer())
    tables.append(
        measure(
            "Seed 004 network (QD012, QD018)",
            [
                ("fp32, eager", lambda: (fp32, None)),
                ("fp32, torch.compile + freezing", lambda: compiled(fp32, example, True)),
                ("PT2E x86 int8, converted, run eagerly (QD012)", lambda: (x86, None)),
                ("PT2E x86 int8, torch.compile without freezing (QD012)", lambda: compiled(x86, example, False)),
                ("PT2E x86 int8, torch.compile + freezing (the fix)", lambda: compiled(x86, example, True)),
                ("PT2E XNNPACK-style int8, run eagerly", lambda: (xnn, None)),
                ("PT2E XNNPACK-style int8, torch.compile + freezing (QD018)", lambda: compiled(xnn, example, True)),
            ],
            example,
            args.rounds,
            args.min_run_time,
            args.clock,
        )
    )

    plain = seed004_net(maxpool=False)
    tables.append(
        measure(
            "The same network without MaxPool (QD018)",
            [
                ("fp32, eager", lambda: (plain, None)),
                (
                    "PT2E x86 int8, torch.compile + freezing",
                    lambda: compiled(quantize_pt2e(copy.deepcopy(plain), example, x86_quantizer()), example, True),
                ),
                (
                    "PT2E XNNPACK-style int8, torch.compile + freezing (QD018)",
                    lambda: compiled(quantize_pt2e(copy.deepcopy(plain), example, xnnpack_quantizer()), example, True),
                ),
            ],
            example,
            args.rounds,
            args.min_run_time,
            args.clock,
        )
    )

    relu, silu = activation_block("relu"), activation_block("silu")
    tables.append(
        measure(
            "Conv block: ReLU (fused into the int8 conv) vs SiLU (left fp32 between q/dq, QD019)",
            [
                ("fp32 ReLU block, eager", lambda: (relu, None)),
                ("fp32 SiLU block, eager", lambda: (silu, None)),
                (
                    "PT2E x86 int8 ReLU block, torch.compile + freezing",
                    lambda: compiled(quantize_pt2e(copy.deepcopy(relu), example, x86_quantizer()), example, True),
                ),
                (
                    "PT2E x86 int8 SiLU block, torch.compile + freezing (QD019)",
                    lambda: compiled(quantize_pt2e(copy.deepcopy(silu), example, x86_quantizer()), example, True),
                ),
            ],
            example,
            args.rounds,
            args.min_run_time,
            args.clock,
        )
    )
    import torch._inductor.config as inductor_config

    inductor_config.freezing = False
    body = (
        f"Machine: {where}\n\nBatch 1, {args.size}x{args.size}, random weights, 4 random calibration batches. Each "
        f"table's variants: {clock_text(args.clock, args.rounds, args.min_run_time)[0]}.\n\n"
        + "\n\n".join("\n".join(t) for t in tables)
        + f"\n\nCommand: `PYTHONPATH=$PWD python bench/flows_pt2e.py --rounds {args.rounds} --clock {args.clock} --min-run-time "
        f"{args.min_run_time} --size {args.size}`"
    )
    write_section("pt2e", "PT2E: not lowered (QD012), the wrong quantizer (QD018), fp32 ops between q/dq (QD019)", body)
    return body


if __name__ == "__main__":
    print(main(sys.argv[1:]))
