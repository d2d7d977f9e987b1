"""Before/after latency and SQNR of the core rules' fixes (QD001-QD006) on the seed 004 network.

    PYTHONPATH=. python bench/rule_effects.py [--size 224] [--min-run-time 1.0] [--clock wall|cpu] [--markdown]

Every variant is the seed 004 network (../shared/seeds/004_5698be29f259067e.txt: two 3x3 convs with ReLU, max-pool,
global average pool, a Linear head) on one 1x3xSIZExSIZE input, timed with torch.utils.benchmark (qdoctor's own
timing: median and IQR over timed blocks) at the thread count in force. SQNR is against the fp32 model's output on
a held-out input. The rule documents in rules/ quote this table; regenerate it rather than editing numbers by hand,
and write down the machine and whether it was shared (timings on a loaded machine are noisy: read the IQR).

--clock wall (default) is the latency a user sees, at the thread count in force. --clock cpu times the process's CPU
time per forward with one intra-op thread (torch.utils.benchmark.Timer with timer=time.process_time): it ignores the
time the process waits for a core, so on a machine shared with other jobs it keeps the ratios between variants that
wall time loses in the noise. Models are timed as built, without a copy: deep-copying a converted model packs its
weights again for the engine in force, which would hide the "engine switched after convert" case.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.ao import quantization as tq

from qdoctor.facts import Timing
from qdoctor.gather.environment import gather_environment
from qdoctor.gather.numerics import sqnr_db
from qdoctor.gather.timing import NOISY_SPREAD
from qdoctor.introspect.state import preserved_torch_state


class SeedNet(nn.Module):
    """The seed's nn.Sequential with QuantStub/DeQuantStub around it (module paths as in the seed: 0..7)."""

    def __init__(self, stubs: bool = True, fallback: bool = False) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.body = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Linear(128, 10),
        )
        self.dequant = tq.DeQuantStub()
        self.stubs = stubs
        # fp32 fallback: the second conv runs in float between a DeQuantStub and a QuantStub.
        self.fallback = fallback
        if fallback:
            self.dequant_mid = tq.DeQuantStub()
            self.quant_mid = tq.QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.stubs:
            return self.body(x)
        x = self.quant(x)
        if self.fallback:
            x = self.body[2](self.body[1](self.body[0](x)))
            x = self.quant_mid(self.body[4](self.body[3](self.dequant_mid(x))))
            x = self.body[7](self.body[6](self.body[5](x)))
        else:
            x = self.body(x)
        return self.dequant(x)


FUSE = [["body.0", "body.1"], ["body.3", "body.4"]]


def float_net(spread: bool = False) -> nn.Module:
    """The seed network with random weights. ``spread``: each output channel of each conv/linear scaled by a factor
    drawn log-uniformly from [1/16, 4], the uneven per-channel ranges that BatchNorm folding gives trained CNNs
    (random initialisation gives every channel the same range, which hides what per-tensor weights cost)."""
    torch.manual_seed(0)
    model = SeedNet().eval()
    if spread:
        generator = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    factors = torch.exp(torch.empty(layer.weight.shape[0]).uniform_(-2.77, 1.39, generator=generator))
                    layer.weight.mul_(factors.view(-1, *([1] * (layer.weight.dim() - 1))))
                    layer.bias.mul_(factors)
    return model


def calibrate(model: nn.Module, batches: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for batch in batches:
            model(batch)


def static_int8(
    engine: str,
    qconfig_backend: str,
    *,
    fuse: bool = True,
    calibrated: bool = True,
    batches: list[torch.Tensor],
    fallback: bool = False,
    spread: bool = False,
) -> nn.Module:
    torch.backends.quantized.engine = engine
    model = SeedNet(fallback=fallback).eval()
    model.load_state_dict(float_net(spread).state_dict())
    if fuse:
        model = tq.fuse_modules(model, FUSE)
    model.qconfig = tq.get_default_qconfig(qconfig_backend)
    if fallback:
        model.body[3].qconfig = None  # the conv kept in float
        model.body[4].qconfig = None
    prepared = tq.prepare(model)
    if calibrated:
        calibrate(prepared, batches)
    return tq.convert(prepared)


def prepared_only(batches: list[torch.Tensor]) -> nn.Module:
    torch.backends.quantized.engine = "x86"
    model = tq.fuse_modules(float_net(), FUSE)
    model.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(model)
    calibrate(prepared, batches)
    return prepared


def qat_left(batches: list[torch.Tensor]) -> nn.Module:
    torch.backends.quantized.engine = "x86"
    model = tq.fuse_modules_qat(float_net().train(), FUSE)
    model.qconfig = tq.get_default_qat_qconfig("x86")
    prepared = tq.prepare_qat(model)
    calibrate(prepared, batches)  # stands in for training steps: observers and fake-quant see data
    return prepared.eval()


@dataclass
class Variant:
    name: str
    rule: str  # the rule whose before/after this row belongs to
    engine: str  # engine in force when it runs
    build: Callable[[], nn.Module]
    spread: bool = False  # built from float_net(spread=True): SQNR against that float model


def variants(batches: list[torch.Tensor]) -> list[Variant]:
    def repacked_under_x86() -> nn.Module:
        model = static_int8("qnnpack", "qnnpack", batches=batches)
        torch.backends.quantized.engine = "x86"
        return copy.deepcopy(model)  # deepcopy (like a state_dict reload) packs the weights again for x86

    def int8(engine: str, qconfig: str, **options: bool):
        return lambda: static_int8(engine, qconfig, batches=batches, **options)

    return [
        Variant("fp32", "baseline", "x86", float_net),
        Variant("x86 int8, fused, calibrated (all fixes)", "after", "x86", int8("x86", "x86")),
        Variant("x86 int8, not fused", "QD004 before", "x86", int8("x86", "x86", fuse=False)),
        Variant("x86 int8, not calibrated", "QD001 before", "x86", int8("x86", "x86", calibrated=False)),
        Variant(
            "x86 int8, conv 3 in fp32 between dequant/quant", "QD005 before", "x86", int8("x86", "x86", fallback=True)
        ),
        Variant("fbgemm engine + fbgemm qconfig", "QD003 (fbgemm)", "fbgemm", int8("fbgemm", "fbgemm")),
        Variant("qnnpack engine + qnnpack qconfig", "QD003 before", "qnnpack", int8("qnnpack", "qnnpack")),
        Variant("x86 engine + qnnpack qconfig", "QD003 qconfig", "x86", int8("x86", "qnnpack")),
        Variant("x86 engine + onednn qconfig", "QD003 qconfig", "x86", int8("x86", "onednn")),
        Variant(
            "converted under qnnpack, engine then set to x86", "QD003 engine only", "x86", int8("qnnpack", "qnnpack")
        ),
        Variant("converted under qnnpack, deep-copied under x86", "QD003 repacked", "x86", repacked_under_x86),
        Variant(
            "x86 engine + x86 qconfig, channel ranges spread",
            "QD003 qconfig, spread",
            "x86",
            int8("x86", "x86", spread=True),
            spread=True,
        ),
        Variant(
            "x86 engine + qnnpack qconfig, channel ranges spread",
            "QD003 qconfig, spread",
            "x86",
            int8("x86", "qnnpack", spread=True),
            spread=True,
        ),
        Variant(
            "x86 engine + onednn qconfig, channel ranges spread",
            "QD003 qconfig, spread",
            "x86",
            int8("x86", "onednn", spread=True),
            spread=True,
        ),
        Variant("prepared, calibrated, not converted", "QD006 before", "x86", lambda: prepared_only(batches)),
        Variant("QAT fake-quant left (not converted)", "QD006 before (QAT)", "x86", lambda: qat_left(batches)),
    ]


def measure(model: nn.Module, example: torch.Tensor, min_run_time: float, clock: str) -> Timing:
    """torch.utils.benchmark over blocks of forwards of ``model`` itself (no copy): median and IQR."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch.utils.benchmark as benchmark

    threads = 1 if clock == "cpu" else torch.get_num_threads()
    timer_fn = time.process_time if clock == "cpu" else time.perf_counter

    def run() -> None:
        with torch.no_grad():
            model(example)

    run()  # warm-up
    timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=threads, timer=timer_fn)
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    median, iqr = measurement.median * 1000.0, measurement.iqr * 1000.0
    return Timing(
        median_ms=median,
        iqr_ms=iqr,
        runs=len(measurement.times),
        number_per_run=measurement.number_per_run,
        num_threads=threads,
        noisy=bool(median and iqr / median > NOISY_SPREAD),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="input height and width (seed: 224)")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds of timed runs per variant")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="wall latency, or CPU time on 1 thread"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    torch.manual_seed(1)
    batches = [torch.randn(1, 3, args.size, args.size) for _ in range(8)]
    torch.manual_seed(2)
    example = torch.randn(1, 3, args.size, args.size)
    with torch.no_grad():
        references = {False: float_net()(example), True: float_net(spread=True)(example)}

    env = gather_environment()
    print(
        f"machine: {env.cpu_model}, {env.cpu_count} CPUs ({env.machine}, {'/'.join(env.cpu_isa)}), "
        f"torch {env.torch_version}; input 1x3x{args.size}x{args.size}; torch.utils.benchmark blocked_autorange, "
        f"min_run_time {args.min_run_time} s per variant; clock: "
        + ("process CPU time, 1 thread" if args.clock == "cpu" else f"wall time, {torch.get_num_threads()} threads")
    )
    rows = []
    for variant in variants(batches):
        with preserved_torch_state():
            model = variant.build()
            torch.backends.quantized.engine = variant.engine
            timing = measure(model, example, args.min_run_time, args.clock)
            with torch.no_grad():
                out = copy.deepcopy(model)(example)
        sqnr = sqnr_db(references[variant.spread], out)
        rows.append((variant.rule, variant.name, variant.engine, timing, sqnr))

    fp32 = rows[0][3].median_ms
    header = ("rule", "variant", "engine", "median ms", "IQR ms", "runs", "vs fp32", "SQNR dB")
    table = [
        (
            rule,
            name,
            engine,
            f"{t.median_ms:.2f}",
            f"{t.iqr_ms:.2f}",
            str(t.runs),
            f"{fp32 / t.median_ms:.2f}x",
            "inf" if sqnr is not None and math.isinf(sqnr) else (f"{sqnr:.1f}" if sqnr is not None else "-"),
        )
        for rule, name, engine, t, sqnr in rows
    ]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
        for row in [header, *table]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)))


if __name__ == "__main__":
    main()
