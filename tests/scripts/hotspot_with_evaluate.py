# fixtures/error_hotspot_layer.py with evaluate(model): top-1 agreement with the float model's labels on 512 fixed
# inputs of its (synthetic, ten-cluster) task, as an accuracy in 0..1. qdoctor leads with the drop in points and
# runs the speed/accuracy table on it.
# The model is trained first (a short run on a synthetic task), then quantized: on untrained weights qdoctor does
# not judge accuracy (their SQNR describes a random draw), so an accuracy fixture needs trained ones.
import functools

import torch
import torch.ao.quantization as tq
from torch import nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.fc1 = nn.Linear(64, 256)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(256, 256)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(256, 256)
        self.relu3 = nn.ReLU()
        self.fc4 = nn.Linear(256, 10)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu1(self.fc1(x))
        x = self.relu2(self.fc2(x))
        x = self.relu3(self.fc3(x))
        return self.dequant(self.fc4(x))


CENTERS = 0.5 * torch.randn(10, 64, generator=torch.Generator().manual_seed(3))  # ten classes, one cluster each


def samples(count, generator):
    """Points around the ten class centres, and their classes: the synthetic task the MLP is trained on."""
    labels = torch.randint(0, 10, (count,), generator=generator)
    return CENTERS[labels] + torch.randn(count, 64, generator=generator), labels


def train(model, steps=60):
    """Sixty steps of Adam on the synthetic task: the weights of a trained model, not its initial random draw."""
    generator = torch.Generator().manual_seed(2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        x, labels = samples(32, generator)
        loss = nn.functional.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@functools.cache
def trained_weights():
    """Trained once, when the first build asks; each build starts from these weights."""
    torch.manual_seed(0)
    return train(MLP()).state_dict()


def build_float_model():
    model = MLP()
    model.load_state_dict(trained_weights())
    model.eval()
    with torch.no_grad():
        model.fc1.bias[11] = -100.0  # a dead unit
        model.fc2.weight[:, 11] *= 300.0  # its outgoing weights: no effect on the output, but they set each scale
    return model


def calibration_data():
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 64, generator=generator),) for _ in range(8)]


def get_example_inputs():
    return (torch.randn(16, 64, generator=torch.Generator().manual_seed(0)),)


def build_model():
    torch.backends.quantized.engine = "x86"
    model = build_float_model()
    model = tq.fuse_modules(model, [["fc1", "relu1"], ["fc2", "relu2"], ["fc3", "relu3"]])
    model.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(model)
    with torch.no_grad():
        for batch in calibration_data():
            prepared(*batch)
    return tq.convert(prepared)


def evaluate(model):
    x, _ = samples(512, torch.Generator().manual_seed(7))
    with torch.no_grad():
        labels = build_float_model()(x).argmax(dim=1)
        return float((model(x).argmax(dim=1) == labels).float().mean())
