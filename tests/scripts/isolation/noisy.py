"""A script that prints megabytes, from Python and straight to file descriptors 1 and 2 (as native code does)."""
import os

import torch
from torch import nn

for i in range(40_000):
    print(f"epoch {i}: loss 0.{i:05d} and some more text to make the line long")
os.write(1, b"native stdout line\n" * 100_000)
os.write(2, b"native stderr line\n" * 100_000)

model = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)).eval(), {nn.Linear})
example_inputs = (torch.randn(2, 8),)
