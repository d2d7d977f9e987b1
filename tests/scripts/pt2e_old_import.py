# A PT2E script written for torch <= 2.9: PT2E quantization has since moved into torchao.
import torch
from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e

model = torch.nn.Sequential(torch.nn.Linear(8, 8)).eval()
