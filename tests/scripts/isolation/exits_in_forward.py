"""A model whose forward() calls sys.exit(), as some research code does on unexpected input."""
import sys

import torch
from torch import nn


class Quitter(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        sys.exit(3)


model = torch.ao.quantization.quantize_dynamic(Quitter().eval(), {nn.Linear})
example_inputs = (torch.randn(1, 4),)
