# A float model whose evaluate() is broken: compare stops with one line (nothing to compare against).
import torch
from torch import nn

float_model = nn.Sequential(nn.Linear(8, 4)).eval()
example_inputs = (torch.randn(2, 8),)


def evaluate(model):
    raise KeyError("labels")
