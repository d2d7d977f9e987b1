"""A model whose forward() crashes the process in native code, the way a broken quantized kernel does."""
import ctypes

import torch
from torch import nn


class Crashing(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        ctypes.string_at(0)  # reads address 0: SIGSEGV
        return self.fc(x)


model = torch.ao.quantization.quantize_dynamic(Crashing().eval(), {nn.Linear})
example_inputs = (torch.randn(1, 4),)
