"""Example inputs that do not fit the model: 10 features for a layer that takes 16."""
import torch
from torch import nn

float_model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
quantized_model = torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear})
example_inputs = (torch.randn(1, 10),)
