import torch
from torch import nn

net = nn.Sequential(nn.Linear(8, 4)).eval()
q = torch.ao.quantization.quantize_dynamic(net, {nn.Linear})
x = torch.randn(1, 8)
print("about to fail")
raise RuntimeError("the user's script broke here")
never = 1
