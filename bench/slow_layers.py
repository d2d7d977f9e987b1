"""Measured effects for QD023 slow-int8-layer and QD008 on dynamic quantization (their rules/ documents).

    PYTHONPATH=. .venv/bin/python bench/slow_layers.py               # both, writes their sections of bench/RESULTS.md
    PYTHONPATH=. .venv/bin/python bench/slow_layers.py qd023 --quick  # one, short timings, nothing written

Every time is a torch.utils.benchmark measurement (median and IQR over timed blocks, models in alternating rounds).
Random weights, no downloads; the fixtures are the "before" models.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from rules_more import compare, fixture, fmt, run_scenarios
from torch import nn
from torch.ao import quantization as tq

QUICK = "--quick" in sys.argv


def _time(models: dict[str, Any], inputs: tuple, threads: int) -> dict[str, tuple[float, float, int]]:
    return compare(models, inputs, threads, min_run_time=0.2 if QUICK else 3.0, rounds=2 if QUICK else 3)


class DepthwiseConv1dAs2d(nn.Module):
    """The shape change QD023 prescribes: a depthwise Conv1d as a k x k depthwise Conv2d over a height-1 input."""

    def __init__(self, conv1d: nn.Conv1d) -> None:
        super().__init__()
        k = conv1d.kernel_size[0]
        self.conv = nn.Conv2d(
            conv1d.in_channels,
            conv1d.out_channels,
            (k, k),
            stride=(1, conv1d.stride[0]),
            padding=(k // 2, conv1d.padding[0]),
            groups=conv1d.groups,
            bias=conv1d.bias is not None,
        )
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :, k // 2, :] = conv1d.weight
            if conv1d.bias is not None:
                self.conv.bias.copy_(conv1d.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(2)).squeeze(2)


def _quantize(model: nn.Module, groups: list[list[str]], keep_float: tuple[str, ...] = ()) -> nn.Module:
    model = copy.deepcopy(model).eval()
    tq.fuse_modules(model, groups, inplace=True)
    for name in keep_float:
        layer = getattr(model, name)
        layer.qconfig = None
        setattr(model, name, nn.Sequential(tq.DeQuantStub(), layer, tq.QuantStub()))
    model.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(model)
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.randn(1, 80, 200))
    return tq.convert(prepared)


def qd023() -> list[str]:
    torch.backends.quantized.engine = "x86"
    ns = fixture("depthwise_conv1d_int8.py")
    fp32, int8 = ns["float_model"], ns["quantized_model"]
    x = ns["example_inputs"]
    pairs = [["expand", "relu0"], ["depthwise1", "relu1"], ["pointwise1", "relu2"], ["depthwise2", "relu3"]]
    kept = _quantize(fp32, pairs, keep_float=("depthwise1", "depthwise2"))
    rewritten_float = copy.deepcopy(fp32)
    rewritten_float.depthwise1 = DepthwiseConv1dAs2d(fp32.depthwise1)
    rewritten_float.depthwise2 = DepthwiseConv1dAs2d(fp32.depthwise2)
    rewritten = _quantize(rewritten_float, [["expand", "relu0"], ["pointwise1", "relu2"]])
    with torch.no_grad():
        same = (rewritten_float(*x) - fp32(*x)).abs().max().item()
    recipes = {
        "fp32": fp32,
        "int8 as written": int8,
        "int8, depthwise layers kept in float (verified fix)": kept,
        "int8, depthwise Conv1d as kxk depthwise Conv2d": rewritten,
    }
    lines = [
        "### QD023 slow-int8-layer: keyword spotter, 80 mel bands x 200 frames, two depthwise Conv1d of 256 channels",
        "",
        f"The rewritten float model computes the same outputs (max abs difference {same:.1e}).",
        "",
        "| recipe | 1 thread |",
        "| --- | --- |",
    ]
    times = _time(recipes, x, 1)
    lines += [f"| {name} | {fmt(times[name])} |" for name in recipes]
    return lines


def qd008_dynamic() -> list[str]:
    ns = fixture("dynamic_small_lstm.py")
    fp32, dynamic = ns["float_lstm"], ns["quantized_lstm"]
    lines = [
        "### QD008 on dynamic quantization: the dynamic quantization recipe's LSTM (model dimension 8, 20 steps)",
        "",
        "| batch | fp32 (the verified fix: all layers kept float) | dynamic int8 as written |",
        "| --- | --- | --- |",
    ]
    for batch in (1, 16, 64):
        inputs = (torch.randn(20, batch, 8),)
        t = _time({"fp32": fp32, "dynamic": dynamic}, inputs, 1)
        lines.append(f"| {batch} | {fmt(t['fp32'])} | {fmt(t['dynamic'])} |")
    return lines


SCENARIOS = {"qd023": qd023, "qd008_dynamic": qd008_dynamic}


def main(argv: list[str]) -> None:
    chosen = [a.lower() for a in argv if not a.startswith("--")] or list(SCENARIOS)
    run_scenarios(SCENARIOS, chosen, section=None if QUICK else lambda name: f"slow_layers_{name}")


if __name__ == "__main__":
    main(sys.argv[1:])
