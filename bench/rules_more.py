"""Measured effects of the fixes for QD007-QD011 (the "Measured effect" sections of their rules/ documents).

    PYTHONPATH=. .venv/bin/python bench/rules_more.py            # everything, writes its sections of bench/RESULTS.md
    PYTHONPATH=. .venv/bin/python bench/rules_more.py qd008 qd010  # some of it

Every time is a torch.utils.benchmark measurement (median and IQR over timed blocks). Models have random weights
(no downloads); the fixtures in fixtures/ are the "before" models.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import logging
import os
import platform
import runpy
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")

import torch
import torch.utils.benchmark as benchmark
from torch import nn
from torch.ao import quantization as tq

sys.path.insert(0, str(ROOT))
from qdoctor.gather.environment import gather_environment


def compare(
    models: dict[str, Any], inputs: tuple, threads: int | None = None, min_run_time: float = 2.0, rounds: int = 3
) -> dict[str, tuple[float, float, int]]:
    """Time several models (or callables) in alternating rounds, so that a change in the machine's load during the
    run hits all of them alike; each result merges its rounds: (median ms, IQR ms, timed blocks)."""
    threads = threads or torch.get_num_threads()
    runs: dict[str, list] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():

            def run(model: Any = model) -> None:
                with torch.no_grad():
                    model(*inputs)

            run()
            timer = benchmark.Timer("run()", globals={"run": run}, num_threads=threads)
            runs[name].append(timer.blocked_autorange(min_run_time=min_run_time / rounds))
    result = {}
    for name, measurements in runs.items():
        merged = benchmark.Measurement.merge(measurements)[0]
        result[name] = (merged.median * 1e3, merged.iqr * 1e3, len(merged.times))
    return result


def size_mb(model: nn.Module) -> float:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6


def fixture(name: str) -> dict[str, Any]:
    with warnings.catch_warnings(), open(os.devnull, "w") as sink:
        warnings.simplefilter("ignore")
        saved = sys.stdout
        sys.stdout = sink
        try:
            return runpy.run_path(str(ROOT / "fixtures" / name))
        finally:
            sys.stdout = saved


def fmt(t: tuple[float, float, int]) -> str:
    return f"{t[0]:.3f} ± {t[1]:.3f} ms ({t[2]} blocks)"


def static_fx(model: nn.Module, example: tuple, engine: str = "x86") -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = engine
    prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping(engine), example)
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.randn_like(example[0]))
    return convert_fx(prepared)


# ------------------------------------------------------------------------------------------------- scenarios


def qd007() -> list[str]:
    import torchvision

    lines = [
        "### QD007 dynamic-quant-low-coverage: torchvision ResNet, random weights, 1x3x224x224",
        "",
        "| model | recipe | latency (1 thread) | size |",
        "| --- | --- | --- | --- |",
    ]
    x = (torch.randn(1, 3, 224, 224),)
    for arch in ("resnet18", "resnet50"):
        fp32 = getattr(torchvision.models, arch)(weights=None).eval()
        dynamic = tq.quantize_dynamic(fp32, {nn.Linear}, dtype=torch.qint8)
        static = static_fx(fp32, x)
        recipes = {"fp32": fp32, "dynamic {nn.Linear}": dynamic, "static FX x86": static}
        times = compare(recipes, x, 1, min_run_time=6.0)
        for recipe, model in recipes.items():
            lines.append(f"| {arch} | {recipe} | {fmt(times[recipe])} | {size_mb(model):.1f} MB |")
    return lines


def qd008() -> list[str]:
    ns = fixture("small_mlp_int8.py")
    fp32, int8 = ns["build_float_model"](), ns["build_model"]()
    x = ns["get_example_inputs"]()
    lines = [
        "### QD008 quant-overhead-dominates: fixtures/small_mlp_int8.py (16-32-32-4 MLP)",
        "",
        "| batch | threads | fp32 | int8 |",
        "| --- | --- | --- | --- |",
    ]
    for batch in (1, 256):
        inputs = (x[0].repeat(batch, 1),)
        for threads in sorted({1, gather_environment().cpu_count}):
            t = compare({"fp32": fp32, "int8": int8}, inputs, threads)
            lines.append(f"| {batch} | {threads} | {fmt(t['fp32'])} | {fmt(t['int8'])} |")
    return lines


def qd009() -> list[str]:
    ns = fixture("bn_kept_float.py")
    before = ns["quantized_model"]
    float_model = copy.deepcopy(ns["float_model"]).eval()
    fused = tq.QuantWrapper(float_model)
    for block in ("block1", "block2"):
        tq.fuse_modules(getattr(float_model, block), [["conv", "bn", "relu"]], inplace=True)
        # the hand-written stubs stay in the class; after fusion they only wrap an Identity
        getattr(float_model, block).to_float = nn.Identity()
        getattr(float_model, block).to_int8 = nn.Identity()
    float_model.quant, float_model.dequant = nn.Identity(), nn.Identity()
    fused.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(fused)
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.randn(2, 3, 32, 32))
    after = tq.convert(prepared)
    lines = ["### QD009 training-mode (float BatchNorm between int8 convs): fixtures/bn_kept_float.py", ""]
    for x_shape in ((1, 3, 32, 32), (1, 3, 224, 224)):
        x = (torch.randn(*x_shape),)
        t = compare({"before": before, "after": after}, x, 1)
        lines.append(
            f"- input {'x'.join(map(str, x_shape))}, 1 thread: BN kept float {fmt(t['before'])}; "
            f"Conv-BN-ReLU fused {fmt(t['after'])}"
        )
    return lines


def qd010() -> list[str]:
    ns = fixture("threads_set_to_one.py")
    int8, fp32 = ns["quantized_model"], ns["float_model"]
    cores = gather_environment().cpu_count
    lines = [
        "### QD010 thread-config: fixtures/threads_set_to_one.py (2 int8 convs, 1x3x64x64 and 1x3x224x224)",
        "",
        "| input | threads | fp32 | int8 |",
        "| --- | --- | --- | --- |",
    ]
    for shape in ((1, 3, 64, 64), (1, 3, 224, 224)):
        x = (torch.randn(*shape),)
        for threads in sorted({1, cores}):
            t = compare({"fp32": fp32, "int8": int8}, x, threads)
            lines.append(f"| {'x'.join(map(str, shape))} | {threads} | {fmt(t['fp32'])} | {fmt(t['int8'])} |")
    return lines


class _Residual(nn.Module):
    """The residual block of fixtures/resnet_block_add_crash.py, with its add done two ways."""

    def __init__(self, float_functional: bool) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.stem = nn.Conv2d(32, 32, 1)  # as in a ResNet, the identity comes from a conv (channels_last int8)
        self.conv1 = nn.Conv2d(32, 32, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.skip = nn.quantized.FloatFunctional() if float_functional else None
        self.dq_a, self.dq_b, self.requant = tq.DeQuantStub(), tq.DeQuantStub(), tq.QuantStub()
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.quant(x))
        out = self.conv2(self.relu1(self.conv1(x)))
        if self.skip is not None:
            out = self.skip.add(out, x)
        else:
            out = self.requant(self.dq_a(out) + self.dq_b(x))
        return self.dequant(out)


def qd011() -> list[str]:
    lines = ["### QD011 missing-float-functional: residual block, 32 channels", ""]
    built = {}
    for ff in (False, True):
        torch.manual_seed(0)
        model = _Residual(ff).eval()
        model.qconfig = tq.get_default_qconfig("x86")
        prepared = tq.prepare(model)
        with torch.no_grad():
            for _ in range(4):
                prepared(torch.randn(2, 32, 56, 56))
        built[ff] = tq.convert(prepared)
    for shape in ((1, 32, 28, 28), (1, 32, 56, 56)):
        x = (torch.randn(*shape),)
        t = compare({"by hand": built[False], "FloatFunctional": built[True]}, x, 1)
        lines.append(
            f"- block, input {'x'.join(map(str, shape))}, 1 thread: dequantize/add/quantize by hand "
            f"{fmt(t['by hand'])}; FloatFunctional.add {fmt(t['FloatFunctional'])}"
        )
    # The add alone, without the convolutions around it.
    a = torch.quantize_per_tensor(torch.randn(1, 32, 56, 56), 0.05, 128, torch.quint8)
    b = torch.quantize_per_tensor(torch.randn(1, 32, 56, 56), 0.04, 120, torch.quint8)
    a_cl = a.contiguous(memory_format=torch.channels_last)  # what int8 convs return
    b_cl = b.contiguous(memory_format=torch.channels_last)
    ops = {
        "by hand": lambda: torch.quantize_per_tensor(a_cl.dequantize() + b_cl.dequantize(), 0.07, 125, torch.quint8),
        "FloatFunctional": lambda: torch.ops.quantized.add(a_cl, b_cl, 0.07, 125),
        "FloatFunctional, mixed formats": lambda: torch.ops.quantized.add(a_cl, b, 0.07, 125),
    }
    t = compare(ops, (), 1)
    lines.append(
        f"- the add alone, 1x32x56x56 channels_last, 1 thread: dequantize/add/quantize {fmt(t['by hand'])}; "
        f"quantized::add (what FloatFunctional.add becomes) {fmt(t['FloatFunctional'])}; quantized::add "
        f"of a channels_last and a contiguous tensor {fmt(t['FloatFunctional, mixed formats'])}"
    )
    return lines


def _calibrated(model: nn.Module, shape: tuple[int, ...], qconfig: Any = None) -> nn.Module:
    model.qconfig = qconfig or tq.get_default_qconfig("x86")
    prepared = tq.prepare(model)
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.randn(*shape))
    return tq.convert(prepared)


def crash_fixes() -> list[str]:
    """The crash fixtures after the fix their finding gives: they run, at this speed, against fp32."""
    lines = [
        "### Crash doctor: the crash fixtures after their fix (QD015, QD016), 1 thread",
        "",
        "| fixture | before | after the fix (int8) | fp32 |",
        "| --- | --- | --- | --- |",
    ]
    # QD016: the float head gets int8 -> quantize the head too (drop `qconfig = None`).
    ns = fixture("float_conv_gets_int8.py")
    fp32 = ns["float_model"]
    fixed = _calibrated(copy.deepcopy(fp32), (2, 3, 32, 32))
    t = compare({"fixed": fixed, "fp32": fp32}, (torch.randn(1, 3, 32, 32),), 1)
    lines.append(f"| float_conv_gets_int8.py (QD016) | raises | {fmt(t['fixed'])} | {fmt(t['fp32'])} |")
    # QD016: qint8 activations -> the backend's default qconfig (quint8 activations).
    ns = fixture("qint8_activation_qconfig.py")
    fp32 = copy.deepcopy(ns["net"])
    fixed = _calibrated(copy.deepcopy(fp32), (8, 1, 28, 28))
    t = compare({"fixed": fixed, "fp32": fp32}, (torch.randn(1, 1, 28, 28),), 1)
    lines.append(f"| qint8_activation_qconfig.py (QD016) | raises | {fmt(t['fixed'])} | {fmt(t['fp32'])} |")
    # QD015: the int8 model on the CPU (the fixture moves it to CUDA).
    source = (ROOT / "fixtures" / "quantized_on_cuda.py").read_text(encoding="utf-8")
    ns = {}
    exec(compile(source.split("device = torch.device")[0], "quantized_on_cuda.py", "exec"), ns)  # up to the move
    t = compare({"int8": ns["quantized"], "fp32": ns["model"]}, (torch.randn(1, 3, 32, 32),), 1)
    lines.append(f"| quantized_on_cuda.py (QD015), on the CPU | raises | {fmt(t['int8'])} | {fmt(t['fp32'])} |")
    return lines


SCENARIOS: dict[str, Callable[[], list[str]]] = {
    "qd007": qd007,
    "qd008": qd008,
    "qd009": qd009,
    "qd010": qd010,
    "qd011": qd011,
    "crashes": crash_fixes,
}


def machine_line() -> str:
    env = gather_environment()
    load = os.getloadavg()[0]
    # the benchmark itself keeps one core busy: a load above the core count means other jobs shared the machine
    state = "quiet machine" if load < (env.cpu_count or 1) else "busy machine, other jobs running: noisy"
    return (
        f"_{env.cpu_model}, {env.cpu_count} cores ({', '.join(env.cpu_isa)}), {platform.machine()}, torch "
        f"{torch.__version__}, engine {torch.backends.quantized.engine}; load average {load:.1f} at "
        f"start ({state}); {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC._"
    )


def write_section(name: str, lines: list[str]) -> None:
    """This scenario's section of bench/RESULTS.md (bench/common.py keeps the sections apart)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import write_section as write

    title = lines[0].lstrip("#").strip() if lines and lines[0].startswith("#") else f"rules QD007-QD011: {name}"
    write(f"rules_more_{name}", title, "\n".join(lines[1:] if lines and lines[0].startswith("#") else lines))


def run_scenarios(scenarios: dict[str, Any], chosen: list[str], section: Any = None) -> None:
    """Run each chosen scenario (torch's engine and thread count restored after it), print its lines with the
    machine line, and write them to the section ``section(name)`` of bench/RESULTS.md (None: print only)."""
    unknown = [c for c in chosen if c not in scenarios]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {list(scenarios)}")
    for name in chosen:
        engine, threads = torch.backends.quantized.engine, torch.get_num_threads()
        started = machine_line()
        try:
            lines = scenarios[name]()
        finally:
            torch.backends.quantized.engine = engine
            torch.set_num_threads(threads)
        lines = lines[:1] + ["", started] + lines[1:]
        print("\n".join(lines) + "\n", flush=True)
        if section is not None:
            write_section(section(name), lines)


def main(argv: list[str]) -> None:
    run_scenarios(SCENARIOS, [a.lower() for a in argv] or list(SCENARIOS), section=lambda name: name)
    print("wrote bench/RESULTS.md")


if __name__ == "__main__":
    main(sys.argv[1:])
