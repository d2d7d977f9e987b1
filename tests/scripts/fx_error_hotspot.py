# FX graph mode version of fixtures/error_hotspot_layer.py: prepare_fx/convert_fx with the x86 qconfig mapping; fc2's
# rows each hold one weight 300x the rest, so fc2 alone takes the SQNR below the floor.
# The model is trained first (a short run on a synthetic task), then quantized: on untrained weights qdoctor does
# not judge accuracy (their SQNR describes a random draw), so an accuracy fixture needs trained ones.
import functools

import torch
from torch import nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 256)
        self.fc4 = nn.Linear(256, 10)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.relu1(self.fc1(x))
        x = self.relu2(self.fc2(x))
        x = self.relu3(self.fc3(x))
        return self.fc4(x)


def train(model, steps=60):
    """Sixty steps of Adam on a synthetic task (a fixed random teacher labels Gaussian inputs): the weights
    of a trained model, not its initial random draw."""
    generator = torch.Generator().manual_seed(2)
    teacher = torch.randn(64, 10, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        x = torch.randn(32, 64, generator=generator)
        loss = nn.functional.cross_entropy(model(x), (x @ teacher).argmax(dim=1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()



@functools.cache
def trained_weights():
    """Trained once, when the first build asks (a top-level training loop could outlast the loader's per-statement
    budget on a loaded machine)."""
    torch.manual_seed(0)
    return train(MLP()).state_dict()


def build_float_model():
    model = MLP()
    model.load_state_dict(trained_weights())
    model.eval()
    with torch.no_grad():
        model.fc1.bias[11] = -100.0
        model.fc2.weight[:, 11] *= 300.0
    return model


def get_example_inputs():
    return (torch.randn(16, 64, generator=torch.Generator().manual_seed(0)),)


def calibration_data():
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 64, generator=generator),) for _ in range(8)]


def build_model():
    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(build_float_model(), get_default_qconfig_mapping("x86"), get_example_inputs())
    with torch.no_grad():
        for batch in calibration_data():
            prepared(*batch)
    return convert_fx(prepared)
