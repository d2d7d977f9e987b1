# A converted model returned by build_model() with no float baseline to rebuild from.
import torch
import torch.nn as nn
import torch.ao.quantization as tq


def build_model():
    model = tq.QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
    model.qconfig = tq.get_default_qconfig("x86")
    return tq.convert(tq.prepare(model))  # never calibrated


example_inputs = torch.randn(1, 3, 16, 16)
