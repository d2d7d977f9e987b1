"""A model whose process is killed with SIGKILL mid-run, as the kernel's out-of-memory killer does."""
import os
import signal

import torch
from torch import nn


class Victim(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        os.kill(os.getpid(), signal.SIGKILL)


model = torch.ao.quantization.quantize_dynamic(Victim().eval(), {nn.Linear})
example_inputs = (torch.randn(1, 4),)
