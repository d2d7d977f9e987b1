"""Small models and helpers the per-flow tests share (tests/flows/test_<flow>.py)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from qdoctor import flows
from qdoctor.flows import Built, CodeNames, RebuildInputs, RebuildPlan
from qdoctor.introspect.flow import model_flow
from qdoctor.introspect.state import preserved_torch_state

EXAMPLE = (torch.randn(2, 3, 8, 8),)


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(144, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.relu(self.bn(self.conv(x)))))


def float_net() -> nn.Module:
    torch.manual_seed(0)
    return ConvNet().eval()


def detected(model: nn.Module) -> flows.Detected:
    return flows.detect(model_flow(model))


def rebuild(flow: flows.Flow, model: nn.Module, groups: list[list[str]] | None = None, **plan: Any) -> Built:
    """The flow's rebuild of ``model`` (its plan on the x86 engine), run once on the example inputs."""
    recipe = RebuildPlan(flow=flow, engine="x86", qconfig_engine="x86", **plan)
    given = RebuildInputs(copy.deepcopy(model), EXAMPLE, [EXAMPLE, EXAMPLE], CodeNames(), groups or [])
    with preserved_torch_state():
        built = flow.rebuild(recipe, given)
        with flow.runtime(built), torch.no_grad():
            built.model(*EXAMPLE)
    compile(built.code, "<snippet>", "exec")  # the fix snippet is Python
    return built
