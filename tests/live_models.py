"""Small models built in the test process, for the Python API (qdoctor.check_model) and its pytest plugin: an eager
static int8 CNN quantized with or without fusing Conv-BN-ReLU (the step the PyTorch static quantization tutorial
does before prepare: https://pytorch.org/tutorials/advanced/static_quantization_tutorial.html), random weights and
synthetic calibration batches."""

from __future__ import annotations

import copy
import warnings

import torch
import torch.ao.quantization as tq
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.relu(self.bn(self.conv(self.quant(x))))
        return self.dequant(self.fc(torch.flatten(self.pool(x), 1)))


def example_inputs() -> tuple[torch.Tensor, ...]:
    return (torch.randn(1, 3, 16, 16),)


def calibration_batches() -> list[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(2, 3, 16, 16, generator=generator),) for _ in range(3)]


def float_model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval()


def prepared(model: nn.Module, fuse: bool, engine: str = "x86") -> nn.Module:
    """A calibrated, prepared (observed) copy: convert() not called yet."""
    model = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fuse:
            model = tq.fuse_modules(model, [["conv", "bn", "relu"]])
        model.qconfig = tq.get_default_qconfig(engine)
        observed = tq.prepare(model)
        for batch in calibration_batches():
            observed(*batch)
    return observed


def quantized(model: nn.Module, fuse: bool, engine: str = "x86") -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tq.convert(prepared(model, fuse, engine))
