# FX graph mode, qnnpack qconfig mapping, converted without calibration.
import torch
import torch.nn as nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

torch.manual_seed(0)
float_model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 30 * 30, 10)).eval()
example_inputs = torch.randn(1, 3, 32, 32)
prepared = prepare_fx(float_model, get_default_qconfig_mapping("qnnpack"), (example_inputs,))
quantized_model = convert_fx(prepared)
