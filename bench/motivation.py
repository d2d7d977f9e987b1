"""The table that motivates qdoctor, regenerated with qdoctor's own builders and timer: the seed 004 network and
ResNet50 (random weights), batch 1, fp32 vs int8 per engine, fused or not, observers left, QAT left, dynamic-only.

    python bench/motivation.py [--quick]   (--quick: the seed 004 network only)
"""

from __future__ import annotations

import copy
import sys
import warnings

from common import machine, ms, table, write_section


def seed004_net():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(128, 10),
    ).eval()


def variants(float_model, inputs, engines):
    """(name, build) pairs; build() -> (model, engine)."""
    import torch
    from torch.ao import quantization as tq

    from qdoctor.flows import calibrate, calibration_batches, wrap_with_stubs
    from qdoctor.flows.dynamic import dynamic
    from qdoctor.flows.eager import static_eager
    from qdoctor.introspect.state import quantized_engine
    from qdoctor.prescribe.recipe import fusion_plan

    batches, _ = calibration_batches(None, inputs)
    groups = fusion_plan(float_model, inputs)

    def observers_left():
        with quantized_engine("x86"):
            model = wrap_with_stubs(copy.deepcopy(float_model).eval())
            model.qconfig = tq.get_default_qconfig("x86")
            prepared = tq.prepare(model)
            calibrate(prepared, batches)
        return prepared, "x86"

    def qat_left():
        with quantized_engine("x86"):
            model = wrap_with_stubs(copy.deepcopy(float_model))
            model.train()
            model.qconfig = tq.get_default_qat_qconfig("x86")
            prepared = tq.prepare_qat(model)
            calibrate(prepared, batches)
            prepared.eval()
        return prepared, "x86"

    yield "fp32", lambda: (copy.deepcopy(float_model), torch.backends.quantized.engine)
    for engine in engines:
        yield (
            f"static int8, {engine}, fused",
            lambda e=engine: _built(static_eager(float_model, e, batches, groups=groups)),
        )
    yield (
        "static int8, x86, not fused",
        lambda: _built(static_eager(float_model, "x86", batches)),
    )
    yield "prepared, not converted (observers left)", observers_left
    yield "QAT fake-quant left (not converted)", qat_left
    yield (
        "dynamic int8 (nn.Linear only)",
        lambda: _built(dynamic(float_model, "x86", [__import__("torch").nn.Linear])),
    )


def _built(built):
    return built.model, built.engine


def measure(name, float_model, inputs, engines, bench_time):
    import torch

    from qdoctor.gather.size import serialized_bytes
    from qdoctor.gather.timing import time_model
    from qdoctor.introspect.state import quantized_engine

    rows = []
    base = None
    for label, build in variants(float_model, inputs, engines):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, engine = build()
                with quantized_engine(engine), torch.no_grad():
                    timing = time_model(model, inputs, bench_time)
        except Exception as exc:
            rows.append([name, label, "-", "-", "-", f"failed: {type(exc).__name__}: {str(exc)[:80]}"])
            continue
        base = base or timing.median_ms
        rows.append(
            [
                name,
                label,
                ms(timing.median_ms, timing.iqr_ms),
                f"{base / timing.median_ms:.2f}x",
                f"{serialized_bytes(model) / 1e6:.1f}",
                f"{timing.runs} blocks" + (" (noisy)" if timing.noisy else ""),
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> str:
    import torch
    import torchvision

    argv = argv if argv is not None else sys.argv[1:]
    engines = [e for e in ("x86", "fbgemm", "qnnpack", "onednn") if e in torch.backends.quantized.supported_engines]
    torch.manual_seed(0)
    rows = measure("seed 004 net", seed004_net(), (torch.randn(1, 3, 224, 224),), engines, 1.0)
    if "--quick" not in argv:
        # The quantizable ResNet50 (FloatFunctional for the residual add, stubs) = the float architecture.
        resnet = torchvision.models.quantization.resnet50(weights=None, quantize=False).eval()
        rows += measure("ResNet50", resnet, (torch.randn(1, 3, 224, 224),), engines, 2.0)
    body = (
        f"Machine: {machine()}\n\nBatch 1, 224x224, random weights, calibration on 8 random batches. Built with "
        "qdoctor.quantize (eager static: stubs, fusion found from the traced execution order, calibration, convert) and "
        "timed with qdoctor.gather.timing under the engine each model was converted for.\n\n"
        + table(["model", "variant", "latency ms (median ± IQR)", "speedup vs fp32", "size MB", "runs"], rows)
    )
    write_section("motivation", "Why quantized models get slower: the same network, many ways", body)
    return body


if __name__ == "__main__":
    print(main())
