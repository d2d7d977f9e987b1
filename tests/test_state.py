"""A check leaves torch's global settings and the user's objects as it found them (in-process, the check() API)."""

import importlib
import io
import sys

import torch
from conftest import run_check
from torch import nn

STATE_MODULE = """
import torch
from torch import nn

float_model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
float_model.eval()
prepared = nn.Sequential(torch.ao.quantization.QuantStub(), *[m for m in float_model], torch.ao.quantization.DeQuantStub())
prepared.qconfig = torch.ao.quantization.get_default_qconfig("x86")
prepared = torch.ao.quantization.prepare(prepared.eval())
example_inputs = (torch.randn(2, 3, 8, 8),)
"""

SCRIPT_THAT_CHANGES_SETTINGS = """
import torch
from torch import nn

torch.backends.quantized.engine = "qnnpack"
torch.set_num_threads(1)
torch.set_grad_enabled(False)
torch.manual_seed(1234)
model = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)).eval(), {nn.Linear})
noise = torch.randn(100)  # draws from the global generator
example_inputs = (torch.randn(2, 8),)
"""


def _settings() -> dict:
    # Importing torch.utils.benchmark once adds setuptools' vendored folder to sys.path: an import side effect of
    # torch's, once per process, not state a check leaves behind. Import it before taking the snapshot.
    from qdoctor.gather.timing import _quiet_benchmark_import

    _quiet_benchmark_import()
    return {
        "engine": torch.backends.quantized.engine,
        "threads": torch.get_num_threads(),
        "grad": torch.is_grad_enabled(),
        "default_dtype": torch.get_default_dtype(),
        "rng": torch.random.get_rng_state().clone(),
        "module_init": nn.Module.__init__,
        "sys.path": list(sys.path),
        "sys.argv": list(sys.argv),
        "sys.stdin": sys.stdin,
        "sys.stdout": sys.stdout,
    }


def _assert_same_settings(before: dict, after: dict) -> None:
    assert torch.equal(before.pop("rng"), after.pop("rng")), "the global random generator moved"
    assert before == after


def _object_state(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        "qconfig": [getattr(m, "qconfig", None) for m in model.modules()],
        "types": [type(m) for m in model.modules()],
    }


def _assert_same_object(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), f"{key} changed"
    assert {k: before[k] for k in before if k != "state"} == {k: after[k] for k in after if k != "state"}


def test_user_objects_and_torch_settings_are_unchanged(tmp_path, monkeypatch):
    (tmp_path / "qdoctor_state_target.py").write_text(STATE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    user = importlib.import_module("qdoctor_state_target")
    user.float_model.train()  # the check runs models in eval: the user's training flags must survive
    objects = {"prepared": _object_state(user.prepared), "float_model": _object_state(user.float_model)}
    torch.manual_seed(7)
    settings = _settings()

    report = run_check("qdoctor_state_target:prepared", bench=True, profile=True)

    assert report.facts.benchmark.subject is not None  # the check really ran the models (observers would move)
    assert "QD006" in {f.rule for f in report.findings}
    _assert_same_settings(settings, _settings())
    _assert_same_object(objects["prepared"], _object_state(user.prepared))
    _assert_same_object(objects["float_model"], _object_state(user.float_model))


def test_a_script_that_changes_torch_settings_leaves_them_unchanged(tmp_path):
    script = tmp_path / "changes_settings.py"
    script.write_text(SCRIPT_THAT_CHANGES_SETTINGS)
    torch.manual_seed(7)
    sys.stdin = io.StringIO("the test's own stdin")
    try:
        settings = _settings()
        report = run_check(script, bench=True)
        assert report.facts.environment.quantized_engine == "qnnpack"  # seen as the script left it ...
        assert report.facts.environment.num_threads == 1
        _assert_same_settings(settings, _settings())  # ... and restored afterwards
    finally:
        sys.stdin = sys.__stdin__
