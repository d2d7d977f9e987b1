# A torchao script using a name this torchao release does not have.
import torch
from torchao.quantization import int8_weight_only_config, quantize_

model = torch.nn.Sequential(torch.nn.Linear(8, 8)).eval()
quantize_(model, int8_weight_only_config())
