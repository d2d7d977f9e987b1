"""Bad input: each case gives one clear line (a TargetError, exit 2 in the CLI), never a traceback.

In-process and fast. The same cases run through the CLI and worker processes in tests/test_isolation.py.
"""

import pytest
import torch
from conftest import SCRIPTS, run_check
from torch import nn

from qdoctor.errors import NoModelError, TargetError
from qdoctor.load.input_fit import check_inputs_fit
from qdoctor.run.batch import COULD_NOT_CHECK, expand_targets, model_files

ISOLATION = SCRIPTS / "isolation"


@pytest.mark.parametrize(
    "script, message",
    [
        ("missing_package.py", "imports 'qdoctor_test_no_such_quant_lib', which is not installed"),
        ("asks_for_input.py", r"raised EOFError at line 5 \(it read stdin, which qdoctor leaves empty\)"),
        (
            "wrong_shape.py",
            r"`example_inputs` \(1x10\) do not fit the model: layer `0` \(Linear\) rejected them: "
            "expects 16 input features, got 10",
        ),
    ],
)
def test_bad_scripts_give_one_line(script, message):
    with pytest.raises(TargetError, match=message) as info:
        run_check(ISOLATION / script, profile=False)
    assert "\n" not in str(info.value)


def test_no_module_is_its_own_error_so_directories_can_skip_helpers():
    with pytest.raises(NoModelError, match="no torch.nn.Module found"):
        run_check(SCRIPTS / "no_module.py")


def test_non_utf8_file_names_line_and_byte(tmp_path):
    script = tmp_path / "latin1.py"
    script.write_bytes(b"import torch\n# Mod\xe8le quantifi\xe9\nmodel = torch.nn.Linear(2, 2)\n")
    with pytest.raises(TargetError, match=r"is not UTF-8 text \(line 2, byte 0xe8\): save it as UTF-8"):
        run_check(script)


def test_a_declared_encoding_is_honoured(tmp_path):
    script = tmp_path / "declared.py"
    script.write_bytes(
        b"# -*- coding: latin-1 -*-\nimport torch\n# Mod\xe8le\nmodel = torch.nn.Linear(2, 2)\n"
        b"example_inputs = torch.randn(1, 2)\n"
    )
    report = run_check(script, profile=False)
    assert "Mod\u00e8le" in report.facts.target.script_text


def test_reading_stdin_after_the_model_keeps_the_model(tmp_path):
    script = tmp_path / "reads.py"  # Python-level reads only: in-process, fd 0 is the test runner's
    script.write_text(
        "import sys\nimport torch\nfrom torch import nn\n"
        "model = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)).eval(), {nn.Linear})\n"
        "example_inputs = (torch.randn(2, 8),)\n"
        "settings = sys.stdin.read()\nraw = sys.stdin.buffer.read()\nlayers = input('layers? ')\n"
    )
    report = run_check(script, profile=False)
    assert report.facts.target.load_crash.type == "EOFError"
    assert any("it read stdin, which qdoctor leaves empty" in note for note in report.notes)


def test_not_quantized_model_is_said_with_compare():
    report = run_check(SCRIPTS / "float_only.py", profile=False)
    assert report.findings == []
    assert any("not quantized" in n and "qdoctor compare" in n for n in report.notes)


class _Reshapes(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 2)

    def forward(self, x):
        return self.fc(x.view(1, 64))


@pytest.mark.parametrize(
    "model, inputs, message",
    [
        (
            nn.Sequential(nn.Conv2d(3, 8, 3)),
            torch.randn(1, 4, 16, 16),
            "layer `0` (Conv2d) rejected them: expects 3 input channels, got 4",
        ),
        (nn.Sequential(nn.Conv2d(3, 8, 3)), torch.randn(1, 3), "expects a 4-D input (N, C, ...), got shape [1, 3]"),
        (
            nn.Sequential(nn.Identity(), nn.LSTM(8, 4)),
            torch.randn(5, 1, 6),
            "layer `1` (LSTM) rejected them: expects input_size 8, got 6",
        ),
        (nn.Sequential(nn.Embedding(10, 4)), torch.tensor([[3, 12]]), "expects token ids below 10, got 12"),
        (
            _Reshapes(),
            torch.randn(1, 10),
            "the forward() of `net` rejected them: RuntimeError: shape '[1, 64]' is invalid",
        ),
    ],
)
def test_the_layer_that_rejects_the_inputs_is_named(model, inputs, message):
    with pytest.raises(TargetError) as info:
        check_inputs_fit(model, "net", (inputs,), "`x`", probe_is_float=True)
    assert message in str(info.value)


def test_quantized_model_given_wrong_shape_without_float_baseline():
    quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(16, 4)).eval(), {nn.Linear})
    with pytest.raises(TargetError, match="layer `0` .* expects 16 input features, got 10"):
        check_inputs_fit(quantized, "model", (torch.randn(1, 10),), "`x`", probe_is_float=False)


def test_a_crash_that_is_not_about_the_inputs_is_left_to_the_trace(check_fixture):
    # seed 004's mistake: converted without QuantStub, so the first quantized conv gets a float tensor and raises.
    # That is a finding for the rules (QD002), not bad input.
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    quantized = torch.ao.quantization.convert(torch.ao.quantization.prepare(model))
    inputs = (torch.randn(1, 3, 8, 8),)
    with pytest.raises(NotImplementedError, match="quantized::conv2d"):
        quantized(*inputs)  # the model does raise on these inputs ...
    assert check_inputs_fit(quantized, "quantized_model", inputs, "`x`", probe_is_float=False) is None  # ... quietly
    # a quantized model's dtype complaint is a quantization matter too: not judged without a float probe
    dynamic = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(4, 4)).eval(), {nn.Linear})
    doubles = (torch.randn(1, 4).double(),)
    with pytest.raises(RuntimeError, match="Double"):
        dynamic(*doubles)
    assert check_inputs_fit(dynamic, "model", doubles, "`x`", probe_is_float=False) is None
    # and the check goes on: the same mistake in a script is diagnosed at its module, not refused as bad input (exit 2)
    report = check_fixture("fixtures/seed004_as_written.py")
    assert report.facts.crash is not None and report.facts.crash.module == "0"
    assert report.facts.crash.type == "NotImplementedError"
    assert [f.location.module for f in report.findings if f.rule == "QD002"] == ["0"]
    assert report.exit_code() == 1


def test_directories_expand_to_model_files(tmp_path):
    (tmp_path / "resnet.py").write_text("import torch\nmodel = torch.nn.Linear(2, 2)\n")
    (tmp_path / "mobilenet.py").write_text("import torch\nmodel = torch.nn.Linear(2, 2)\n")
    (tmp_path / "notes.py").write_text("x = 1\n")  # does not use torch
    (tmp_path / "test_models.py").write_text("import torch\n")
    (tmp_path / "__init__.py").write_text("import torch\n")
    assert [p.name for p in model_files(tmp_path)] == ["mobilenet.py", "resnet.py"]
    planned = expand_targets([str(tmp_path), str(tmp_path / "missing.py"), "pkg.mod:attr"])
    assert [p.spec for p in planned] == [
        str(tmp_path / "mobilenet.py"),
        str(tmp_path / "resnet.py"),
        str(tmp_path / "missing.py"),
        "pkg.mod:attr",
    ]
    assert planned[0].from_directory and planned[2].error == f"no such file: {tmp_path / 'missing.py'}"
    assert planned[3].error is None


def test_a_directory_without_model_files_is_one_line(tmp_path):
    (tmp_path / "README.txt").write_text("no models here")
    (tmp_path / "helper.py").write_text("def f():\n    return 1\n")
    from qdoctor.run.batch import Runner
    from qdoctor.run.check import CheckOptions

    outcomes = Runner(CheckOptions()).run(expand_targets([str(tmp_path)]))
    assert len(outcomes) == 1 and outcomes[0].status == COULD_NOT_CHECK
    assert (
        outcomes[0].reason == f"{tmp_path}: no model files in this directory (*.py files that use torch; "
        "subdirectories are not searched)"
    )
    assert outcomes[0].exit_code() == 2
