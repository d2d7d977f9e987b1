# Dynamic int8 Linear layers, run with the qnnpack engine.
import torch
import torch.nn as nn

torch.backends.quantized.engine = "qnnpack"
torch.manual_seed(0)
float_model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10)).eval()
example_inputs = torch.randn(8, 256)
quantized_model = torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)
