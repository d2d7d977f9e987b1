"""A script that asks for its model size on the terminal before it builds anything."""
import torch
from torch import nn

hidden = int(input("hidden size? "))
model = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(hidden, 4)).eval(), {nn.Linear})
