"""A model whose forward() never returns (a deadlock, an endless loop), and a helper process the script started."""
import os
import subprocess
import sys
import time

import torch
from torch import nn

# A server or data-loading process of the script's own: it must not outlive the check.
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
if os.environ.get("QDOCTOR_TEST_HELPER_PID_FILE"):
    with open(os.environ["QDOCTOR_TEST_HELPER_PID_FILE"], "w") as pid_file:
        pid_file.write(str(helper.pid))


class Stuck(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        while True:
            time.sleep(0.05)


model = torch.ao.quantization.quantize_dynamic(Stuck().eval(), {nn.Linear})
example_inputs = (torch.randn(1, 4),)
