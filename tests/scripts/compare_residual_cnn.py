# A small float CNN with a residual `+` in forward() and no nn.Linear: FX static int8 applies, eager-mode static
# int8 cannot run the `+` on quantized tensors, dynamic int8 has nothing to quantize.
import torch
from torch import nn


class ResidualCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.relu = nn.ReLU()
        self.head = nn.Conv2d(8, 5, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.stem(x)
        x = self.relu(x + self.branch(x))
        return self.pool(self.head(x)).flatten(1)


torch.manual_seed(0)
float_model = ResidualCNN().eval()
example_inputs = (torch.randn(2, 3, 12, 12),)
