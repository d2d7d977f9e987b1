import torch
from torch import nn

model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
prepared = torch.ao.quantization.prepare(model)
