"""`qdoctor compare model.py --deploy executorch-xnnpack`: every recipe that yields an exported int8 graph is lowered
and timed in the ExecuTorch runtime against the lowered float model, with its delegation counts; the others say
why in one line (skipped without executorch)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from deployed import need_executorch
from typer.testing import CliRunner

from qdoctor.cli import app
from qdoctor.compare import CompareOptions, compare, to_dict
from qdoctor.compare.reporters import CompareFormat, render

runner = CliRunner()
MODEL = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


torch.manual_seed(0)
float_model = Net().eval()
example_inputs = (torch.randn(1, 3, 16, 16),)
"""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    need_executorch()
    path = tmp_path_factory.mktemp("compare_deploy") / "model.py"
    path.write_text(MODEL)
    return path


@pytest.fixture(scope="module")
def result(model_file):
    options = CompareOptions(recipes="fp32,fx-x86", bench_time=0.05, deploy="executorch-xnnpack")
    return compare(str(model_file), options)


def test_the_targets_own_pt2e_recipe_is_lowered_and_timed_against_the_float_program(result):
    deploy = result.deploy
    assert deploy is not None and deploy.target == "executorch-xnnpack" and deploy.unavailable is None
    assert deploy.float_program is not None and deploy.float_program.latency is not None
    own = next(r for r in deploy.recipes if r.recipe == "pt2e-xnnpack")
    assert own.reason is None and "XNNPACKQuantizer" in own.title
    assert own.program is not None and own.program.partitions == 1 and own.program.delegated_nodes > 0
    assert own.program.quantized_ops > 0 and not own.program.left_out()
    assert own.program.latency is not None and own.speedup is not None


def test_a_recipe_that_is_not_an_exported_graph_says_why_in_one_line(result):
    fx = next(r for r in result.deploy.recipes if r.recipe == "fx-x86")
    assert fx.program is None and "not an exported graph" in fx.reason and "\n" not in fx.reason


def test_the_json_and_the_text_carry_the_delegation_counts(result):
    document = to_dict(result)["deploy"]
    own = next(r for r in document["recipes"] if r["recipe"] == "pt2e-xnnpack")
    assert own["program"]["partitions"] == 1 and own["program"]["latency"]["median_ms"] > 0
    assert own["speedup"]["low"] <= own["speedup"]["value"] <= own["speedup"]["high"]
    assert document["float_program"]["program_bytes"] > 0
    for fmt in (CompareFormat.terminal, CompareFormat.markdown, CompareFormat.html):
        text = render(result, fmt)
        assert "executorch-xnnpack" in text and "pt2e-xnnpack" in text and "delegated partition" in text
        assert "not an exported graph" in text


def test_compare_without_deploy_has_no_deploy_section(model_file):
    plain = compare(str(model_file), CompareOptions(recipes="fp32", bench_time=0.05))
    assert plain.deploy is None and to_dict(plain).get("deploy") is None


def test_an_unknown_deploy_target_is_one_line(model_file):
    outcome = runner.invoke(app, ["compare", str(model_file), "--deploy", "tflite"])
    assert outcome.exit_code == 2 and "--deploy must be one of executorch-xnnpack" in outcome.output


@pytest.mark.skipif(
    os.environ.get("QDOCTOR_SLOW_TESTS") != "1", reason="calls torch.compile (minutes on 2 cores): QDOCTOR_SLOW_TESTS=1"
)
def test_the_x86_quantizer_lowers_to_xnnpack_with_its_quantize_kernels_left_out(model_file):
    options = CompareOptions(recipes="fp32,pt2e-x86", bench_time=0.05, deploy="executorch-xnnpack")
    x86 = next(r for r in compare(str(model_file), options).deploy.recipes if r.recipe == "pt2e-x86")
    assert x86.program is not None, x86.reason
    assert any(op.op.startswith("quantized_decomposed_") for op in x86.program.left_out())


def test_without_the_runtime_nothing_is_lowered_and_the_result_says_why(monkeypatch):
    import torch

    from qdoctor import flows
    from qdoctor.compare.deploy import deploy_recipes
    from qdoctor.compare.reporters import cells

    flow = flows.deploy_flow("executorch-xnnpack")

    def absent(*_):
        raise ModuleNotFoundError("No module named 'executorch'", name="executorch")

    monkeypatch.setattr(flow, "lower", absent)
    inputs = (torch.randn(1, 3, 8, 8),)
    deploy = deploy_recipes("executorch-xnnpack", torch.nn.Conv2d(3, 4, 3), inputs, [inputs], [], 0.05)
    assert deploy.float_program is None and deploy.recipes == []
    assert "not installed" in deploy.unavailable and "\n" not in deploy.unavailable
    assert cells.deploy_lines(SimpleNamespace(deploy=deploy))[1].startswith("nothing lowered: ")
