# A float model with data-dependent control flow in forward(): FX cannot trace it symbolically, so the fx recipes
# fail; the others (fp32, dynamic) must still be measured.
import torch
from torch import nn


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        if h.sum() > 0:  # depends on the data: no symbolic trace
            h = h * 2
        return self.fc2(h)


torch.manual_seed(0)
float_model = Gated().eval()
example_inputs = (torch.randn(4, 16),)
