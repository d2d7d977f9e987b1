"""A script that needs a package this environment does not have."""
import torch
import qdoctor_test_no_such_quant_lib  # noqa: F401

model = torch.nn.Linear(4, 4)
