# Only a quantized model: no float model to compare recipes from.
import torch
from torch import nn

model = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)).eval(), {nn.Linear}, dtype=torch.qint8)
example_inputs = (torch.randn(1, 8),)
