"""QD013: torchao quantize_ layers that fall back to a float matmul, against fp32 and against the alternatives.

    PYTHONPATH=$PWD python bench/flows_torchao.py [--rounds 5] [--min-run-time 0.5] [--batch 16]

Two MLPs (512 -> 1024 -> 512 -> 10, the fixtures/torchao_weight_only.py model, and 2048 -> 4096 -> 2048 -> 10),
random weights: fp32 eager; Int8WeightOnlyConfig eager (the fallback: the int8 weight cast to float, a float
matmul) and under torch.compile; a bfloat16 copy eager and with Int8WeightOnlyConfig under torch.compile
(Inductor's CPU int8 weight-only kernel, aten._weight_int8pack_mm, takes bfloat16 activations only);
Int8DynamicActivationInt8WeightConfig eager (torch._int_mm) and compiled. Each network's variants are timed in
interleaved rounds (bench/flows_common.interleaved). Writes bench/flows_results.md (section "torchao").
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


def mlp(width: int, hidden: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width), nn.ReLU(), nn.Linear(width, 10)
    ).eval()


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv, batch=(int, 16))
    import torch
    import torchao
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    where = machine()
    tables = []
    for width, hidden in ((512, 1024), (2048, 4096)):
        fp32_in = (torch.randn(args.batch, width),)
        bf16_in = (fp32_in[0].to(torch.bfloat16),)
        fp32 = mlp(width, hidden)

        def quantized(config, dtype=torch.float32, fp32=fp32):
            model = copy.deepcopy(fp32).to(dtype)
            quantize_(model, config)
            return model

        def compiled(model, inputs):
            fn = torch.compile(model)
            start = time.perf_counter()
            with torch.no_grad():
                fn(*inputs)
            return fn, time.perf_counter() - start

        wo_compiled, wo_first = compiled(quantized(Int8WeightOnlyConfig()), fp32_in)
        bf16_compiled, bf16_first = compiled(quantized(Int8WeightOnlyConfig(), torch.bfloat16), bf16_in)
        dyn_compiled, dyn_first = compiled(quantized(Int8DynamicActivationInt8WeightConfig()), fp32_in)
        variants = [
            ("fp32, eager", fp32, fp32_in, None),
            ("Int8WeightOnlyConfig, eager (QD013: float matmul)", quantized(Int8WeightOnlyConfig()), fp32_in, None),
            ("Int8WeightOnlyConfig, torch.compile (fp32 activations)", wo_compiled, fp32_in, wo_first),
            ("bfloat16 copy, eager (no quantization)", copy.deepcopy(fp32).to(torch.bfloat16), bf16_in, None),
            (
                "Int8WeightOnlyConfig on bfloat16, torch.compile (_weight_int8pack_mm)",
                bf16_compiled,
                bf16_in,
                bf16_first,
            ),
            (
                "Int8DynamicActivationInt8WeightConfig, eager (torch._int_mm)",
                quantized(Int8DynamicActivationInt8WeightConfig()),
                fp32_in,
                None,
            ),
            ("Int8DynamicActivationInt8WeightConfig, torch.compile", dyn_compiled, fp32_in, dyn_first),
        ]
        runs = {}
        for label, model, inputs, _ in variants:

            def run(model=model, inputs=inputs):
                with torch.no_grad():
                    model(*inputs)

            runs[label] = run
        timings = interleaved(runs, args.rounds, args.min_run_time, args.clock)
        base = timings["fp32, eager"]
        rows = [
            f"**MLP {width} -> {hidden} -> {width} -> 10, batch {args.batch}**",
            "",
            f"| variant | {clock_text(args.clock, args.rounds, args.min_run_time)[1]} | vs fp32 eager | rounds | "
            "first call s (includes compile) |",
            "| --- | --- | --- | --- | --- |",
        ]
        rows += [row(label, timings[label], base, first) for label, _, _, first in variants]
        tables.append("\n".join(rows))
    body = (
        f"Machine: {where}; torchao {torchao.__version__}. Random weights. Each table's variants: "
        f"{clock_text(args.clock, args.rounds, args.min_run_time)[0]}.\n\n" + "\n\n".join(tables) + "\n\n"
        f"Command: `PYTHONPATH=$PWD python bench/flows_torchao.py --rounds {args.rounds} --clock {args.clock} --min-run-time "
        f"{args.min_run_time} --batch {args.batch}`"
    )
    write_section("torchao", "torchao quantize_: the float-matmul fallback (QD013)", body)
    return body


if __name__ == "__main__":
    print(main(sys.argv[1:]))
