"""What qdoctor wraps while a script runs (nn.Module.__call__ for the call record, the quantization flow steps, the
stand-ins) must not change what the script's own torch calls see (issue 30): a script that runs torch.jit.script,
torch.jit.trace, torch.export.export or torch.compile on its models behaves exactly as it does without qdoctor. Each
API runs on a model whose forward takes positional, keyword and default arguments; the script runs once plainly and
once under qdoctor's loader, and must raise nothing and compute the same outputs. An error that happens only under
qdoctor would be qdoctor's bug, reported as the user's crash.
"""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from qdoctor.load.target import load_target

MODELS = """
from typing import Optional

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x, y: Optional[torch.Tensor] = None, scale: float = 1.0):
        out = self.fc(x)
        if y is not None:
            out = out + y
        return out * scale


class KeywordNet(Net):
    def forward(self, x, y=None, *, scale: float = 1.0):
        return super().forward(x, y, scale)


torch.manual_seed(0)
net = Net().eval()
keyword_net = KeywordNet().eval()
keyword_net.load_state_dict(net.state_dict())
x = torch.randn(2, 4)
y = torch.randn(2, 4)
"""

USES = {
    "jit_script": """
scripted = torch.jit.script(net)
out = scripted(x, y, scale=2.0) + scripted(x) + scripted(x, y)
""",
    "jit_trace": """
traced = torch.jit.trace(net, (x, y))
traced_kw = torch.jit.trace(keyword_net, example_kwarg_inputs={"x": x, "y": y})
out = traced(x, y) + traced_kw(x, y)
""",
    "export": """
exported = torch.export.export(keyword_net, (x,), {"y": y, "scale": 2.0})
defaults = torch.export.export(net, (x, y))
out = exported.module()(x, y=y, scale=2.0) + defaults.module()(x, y)
""",
    "compile": """
compiled = torch.compile(keyword_net, backend="eager", fullgraph=True)
function = torch.compile(lambda a, b: net(a, y=b, scale=3.0) + keyword_net(a), backend="aot_eager", fullgraph=True)
out = compiled(x, y=y, scale=2.0) + compiled(x) + function(x, y)
""",
    "quantized_then_scripted": """
quantized = torch.ao.quantization.quantize_dynamic(net, {nn.Linear})
frozen = torch.jit.freeze(torch.jit.script(quantized))
out = frozen(x, y, scale=2.0) + torch.jit.trace(quantized, (x, y))(x, y)
""",
}


def _plain(path: Path) -> torch.Tensor:
    """The script run as Python runs it, without qdoctor (a module with its file, so TorchScript finds the source)."""
    module = types.ModuleType(f"plain_{path.stem}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.__dict__["out"]


@pytest.mark.parametrize("api", sorted(USES))
def test_the_script_s_torch_calls_behave_as_without_qdoctor(tmp_path, api):
    import torch.ao.quantization as quantization
    import torch.ao.quantization.quantize_fx as quantize_fx

    steps = (quantization.convert, quantization.prepare, quantization.quantize_dynamic, quantize_fx.convert_fx)
    source = textwrap.dedent(MODELS) + textwrap.dedent(USES[api])
    plain = tmp_path / "plain" / f"{api}.py"
    plain.parent.mkdir()
    plain.write_text(source)
    torch._dynamo.reset()
    expected = _plain(plain)
    torch._dynamo.reset()
    path = tmp_path / f"{api}.py"
    path.write_text(source)
    loaded = load_target(str(path))
    errors = [f"line {e.line}: {e.type}: {e.message[:200]}" for e in loaded.target.script_errors]
    assert not errors, errors
    assert torch.allclose(loaded.namespace["out"], expected)
    assert torch.nn.Module.__call__.__name__ == "_wrapped_call_impl"  # the recorder is gone
    after = (quantization.convert, quantization.prepare, quantization.quantize_dynamic, quantize_fx.convert_fx)
    assert all(a is b for a, b in zip(steps, after, strict=True))  # the flow-step wrappers are gone


def test_flow_step_wrappers_never_outlive_the_script_even_in_modules_it_imported(tmp_path, monkeypatch):
    """A module first imported while the script runs takes the wrapper from its source; it gets the original back."""
    import torch.ao.quantization.quantize_fx as quantize_fx

    original = quantize_fx.convert_fx
    for name in [n for n in sys.modules if n == "torch.quantization.quantize_fx"]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh by the script, from the patched source
    path = tmp_path / "alias.py"
    path.write_text("import torch.quantization.quantize_fx as alias\nimport torch\nmodel = torch.nn.Linear(2, 2)\n")
    load_target(str(path))
    assert sys.modules["torch.quantization.quantize_fx"].convert_fx is original
