"""A model whose forward() never returns (a deadlock, an endless loop)."""
import time

import torch
from torch import nn


class Stuck(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        while True:
            time.sleep(0.05)


model = torch.ao.quantization.quantize_dynamic(Stuck().eval(), {nn.Linear})
example_inputs = (torch.randn(1, 4),)
