"""A script written for a terminal: it reads stdin (Python-level and file-descriptor level) after building its model."""
import os
import sys

import torch
from torch import nn

model = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)).eval(), {nn.Linear})
example_inputs = (torch.randn(2, 8),)

settings = sys.stdin.read()  # "" under qdoctor
raw = os.read(0, 1024)  # b"" under qdoctor: /dev/null
layers = input("Quantize which layers? ")  # EOFError: the globals above are kept
