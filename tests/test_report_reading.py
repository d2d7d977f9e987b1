"""Reading a bug report beyond the code that runs (issue 24): the forms its code takes (reStructuredText, notebooks,
HTML, console sessions, indented and cut blocks), the errors it quotes, the names it leaves out, and the quantization
steps read from its Python without running it. Pure text and hand-built facts: no model runs here."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from factsbuild import env, make_facts, mod

from qdoctor import facts as F
from qdoctor.diagnose.findings import Severity
from qdoctor.diagnose.registry import STATIC_BASIS, TRACEBACK_BASIS, run_from_text
from qdoctor.errors import TargetError
from qdoctor.facts import CrashInfo
from qdoctor.facts import report as R
from qdoctor.load.report_text import extract
from qdoctor.load.report_tracebacks import report_crashes
from qdoctor.load.standin_names import stand_in_names
from qdoctor.load.static_read import read_steps

# ------------------------------------------------------------------------------------------ forms


def test_restructuredtext_code_directives_and_literal_blocks_run_in_order():
    text = (
        "Title\n=====\n\n"  # 1-3
        ".. code-block:: python\n"  # 4
        "   :linenos:\n\n"  # 5-6
        "   import torch\n"  # 7
        "   x = torch.ones(2)\n\n"  # 8-9
        "Then::\n\n"  # 10-11
        "    y = x * 2\n\n"  # 12-13
        "Output::\n\n"  # 14-15
        "    14.27 MB\n"  # 16: a literal block that is output, not code
        ".. code:: bash\n\n"  # 17-18
        "    pip install torch\n"  # 19
    )
    script = extract(text, "tutorial.rst")
    assert script.kind == "rst"
    assert script.ran == [(7, 8), (12, 12)]
    assert script.source.splitlines()[6] == "import torch"


def test_a_notebook_runs_its_code_cells_and_its_error_outputs_are_quoted():
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": ["# Quantize\n"]},
            {"cell_type": "code", "source": ["import torch\n", "%matplotlib inline\n", "x = torch.ones(2)\n"]},
            {
                "cell_type": "code",
                "source": ["y = x + 1\n"],
                "outputs": [
                    {
                        "output_type": "error",
                        "ename": "NotImplementedError",
                        "evalue": "Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend.",
                        "traceback": ["\x1b[0;31m---\x1b[0m", 'File "<ipython-input-3>", line 1'],
                    }
                ],
            },
        ]
    }
    script = extract(json.dumps(notebook), "report.ipynb")
    assert script.kind == "notebook"
    assert "x = torch.ones(2)" in script.source and "# %matplotlib inline" in script.source
    [crash] = script.crashes
    assert crash.type == "NotImplementedError" and "aten::add.out" in crash.message


def test_an_html_page_runs_its_pre_code_blocks_with_entities_unescaped():
    page = (
        "<html><body><p>My model &amp; the error:</p>"
        '<pre><code class="language-python">import torch\nx = torch.ones(2)\nif x.sum() &gt; 1:\n    y = x</code></pre>'
        "<pre>RuntimeError: Could not run &#39;quantized::linear&#39; with arguments from the &#39;CPU&#39; backend"
        "</pre></body></html>"
    )
    script = extract(page, "thread.html")
    assert script.kind == "html"
    assert "if x.sum() > 1:" in script.source
    assert [c.type for c in script.crashes] == ["RuntimeError"] and "'quantized::linear'" in script.crashes[0].message


def test_a_console_session_pasted_as_text_runs_without_prompts_or_output():
    text = "I ran:\n\n>>> import torch\n>>> x = torch.ones(2)\n>>> x * 2\ntensor([2., 2.])\n>>> y = (x +\n... 1)\n"
    script = extract(text, "post.txt")
    lines = script.source.splitlines()
    assert lines[2] == "import torch" and lines[5] == "" and lines[6] == "y = (x +" and lines[7] == "1)"


def test_code_written_one_inline_code_span_a_line_runs_as_code():
    """datvuthanh/HybridNets#27: an issue typed without a fence, each line of code in its own backticks."""
    text = (
        "`model_to_quantize = copy.deepcopy(model)`\n\n`model_to_quantize.eval()`\n\n`# prepare`\n"
        "`model_prepared = quantize_fx.prepare_fx(model_to_quantize, qconfig_dict)`\n\n"
        "When I use `prepare_fx` I get this error:\n>NameError: module is not installed as a submodule\n"
    )
    script = extract(text, "issue.md")
    lines = script.source.splitlines()
    assert lines[0] == "model_to_quantize = copy.deepcopy(model)" and lines[5].startswith("model_prepared = ")
    assert script.ran == [(1, 6)] and not lines[7].strip()  # the prose that mentions `prepare_fx` is not code
    [quoted] = script.crashes
    assert quoted.type == "NameError" and quoted.message == "module is not installed as a submodule"


def test_markdown_indented_blocks_run_beside_fences():
    text = "Setup:\n\n```python\nimport torch\n```\n\nThen:\n\n    x = torch.ones(2)\n    y = x * 2\n\nThanks\n"
    script = extract(text, "issue.md")
    assert script.ran == [(4, 4), (9, 10)]


def test_a_block_cut_mid_statement_runs_to_its_last_complete_statement_with_a_note():
    text = "```python\nimport torch\nx = torch.ones(2)\nwith torch.no_grad():\n    y = f(x,\n"
    script = extract(text, "issue.md")
    assert script.ran == [(2, 3)]
    assert any("cut mid-statement" in s and "line 3" in s for s in script.skipped)


def test_exit_2_only_when_the_text_holds_neither_python_nor_a_traceback():
    with pytest.raises(TargetError, match="no Python found in the report and no traceback"):
        extract("Hello,\n\nmy quantized model is slow.\n", "issue.md")
    script = extract(
        "Hello,\n\nRuntimeError: Didn't find engine for operation quantized::conv2d_prepack NoQEngine\n", "a.md"
    )
    assert script.ran == [] and [c.type for c in script.crashes] == ["RuntimeError"]


# ------------------------------------------------------------------------------------------ quoted errors


def test_quoted_errors_keep_their_frames_and_are_read_once():
    text = (
        "Traceback (most recent call last):\n"
        '  File "run.py", line 3, in <module>\n'
        "    out = model(x)\n"
        "NotImplementedError: Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend.\n"
        "\nAgain:\nNotImplementedError: Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend.\n"
        "It raises a ValueError sometimes.\n"
    )
    [crash] = report_crashes(text)
    assert crash.phase == "report" and crash.line == 4 and 'File "run.py"' in crash.traceback


@pytest.mark.parametrize(
    "message, rule",
    [
        ("NotImplementedError: Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend.", "QD011"),
        ("NotImplementedError: Could not run 'quantized::conv2d.new' with arguments from the 'CPU' backend.", "QD002"),
        (
            "RuntimeError: Could not run 'aten::thnn_conv2d_forward' with arguments from the 'QuantizedCPU' backend.",
            "QD002",
        ),
        ("AssertionError: Fusion only for eval!", "QD009"),
        ("ImportError: cannot import name 'capture_pre_autograd_graph' from 'torch._export'", "QD017"),
        ("RuntimeError: Didn't find engine for operation quantized::conv2d_prepack NoQEngine", "QD003"),
        (
            "NotImplementedError: Could not run 'quantized::linear' with arguments from the 'QuantizedCUDA' backend.",
            "QD015",
        ),
        (">NameError: module is not installed as a submodule", "QD017"),  # HybridNets#27, quoted as a blockquote
        (
            "RuntimeError: quantized::conv1d_prepack() Expected a value of type 'List[int]' for argument 'padding' "
            "but instead found type 'str'.",
            "QD017",
        ),
    ],
)
def test_quoted_errors_map_through_the_crash_table_to_their_rule(message, rule):
    facts = _text_facts("", crashes=report_crashes(message))
    [finding] = run_from_text(facts, [])
    assert finding.rule == rule and finding.evidence["basis"] == TRACEBACK_BASIS
    assert finding.severity is Severity.WARNING and "not reproduced" in finding.message


# ------------------------------------------------------------------------------------------ stand-ins for names


def test_missing_imports_of_well_known_names_are_stood_in_and_listed():
    values, subs = stand_in_names(
        "x = torch.ones(2)\nm = nn.Linear(2, 2)\ny = np.zeros(2)\nz = tq.QuantStub()\n", "r.md"
    )
    assert set(values) == {"torch", "nn", "np", "tq"}
    assert {s.kind for s in subs} == {"import"}
    assert [s.line for s in subs] == [1, 2, 3, 4]
    assert "import torch.nn as nn" in subs[1].instead


def test_names_the_script_binds_are_not_stood_in():
    values, subs = stand_in_names("import torch as nn\ndef f(np):\n    return np\nF = 1\nprint(nn, F)\n", "r.md")
    assert values == {} and subs == []


def test_class4_an_undefined_torchvision_model_class_becomes_torchvision_builder():
    plain, [sub] = stand_in_names("model = MobileNetV2(num_classes=10)\nmodel.eval()\n", "r.md")
    model = plain["MobileNetV2"](num_classes=10)
    assert type(model).__name__ == "MobileNetV2" and sub.kind == "model-class"
    assert "torchvision.models.mobilenet_v2(weights=None)" in sub.instead
    eager, [sub] = stand_in_names("model = MobileNetV2()\nmodel.fuse_model()\n", "r.md")
    assert type(eager["MobileNetV2"]()).__name__ == "QuantizableMobileNetV2" and "quantizable" in sub.instead
    resnet, _ = stand_in_names("net = ResNet18()\n", "r.md")
    assert type(resnet["ResNet18"]()).__name__ == "ResNet"
    builder, [sub] = stand_in_names("net = resnet18(pretrained=True)\n", "r.md")
    assert (
        type(builder["resnet18"](pretrained=True)).__name__ == "ResNet" and "torchvision.models.resnet18" in sub.instead
    )
    unknown, subs = stand_in_names("net = MyOwnNet()\n", "r.md")
    assert unknown == {} and subs == []


def test_a_torchvision_builder_imported_from_the_authors_own_package_is_stood_in():
    """facebookresearch/ConvNeXt#20: `from models.convnext import convnext_tiny`, a package of the author's repo."""
    source = "from models.convnext import convnext_tiny\nfrom models.other import MyNet\nmodel = convnext_tiny(False)\n"
    values, [sub] = stand_in_names(source, "r.md")
    assert set(values) == {"convnext_tiny"} and type(values["convnext_tiny"](False)).__name__ == "ConvNeXt"
    assert sub.line == 1 and "imported from a package not installed here" in sub.requested
    assert "torchvision.models.convnext_tiny(weights=None)" in sub.instead
    installed, subs = stand_in_names("from torchvision.models import resnet18\nnet = resnet18()\n", "r.md")
    assert installed == {} and subs == []  # an import that works binds the real thing


# ------------------------------------------------------------------------------------------ the static pass


def _text_facts(
    source: str, crashes: list[CrashInfo] | None = None, machine: str = "x86_64", modules: list | None = None
) -> F.Facts:
    """Facts of a report read statically (``modules`` None: no model of it ran)."""
    facts = make_facts(modules, environment=env(machine=machine))
    read = read_steps(source, file="/r/report.md")
    target = replace(facts.target, static_read=read, report_crashes=list(crashes or []), file="/r/report.md")
    return replace(facts, target=target)


def _rules(facts: F.Facts) -> dict[str, list]:
    found: dict[str, list] = {}
    for finding in run_from_text(facts, []):
        found.setdefault(finding.rule, []).append(finding)
    return found


def test_steps_are_read_in_order_with_their_lines():
    source = (
        "import torch\n"
        "backend = 'qnnpack'\n"
        "torch.backends.quantized.engine = backend\n"
        "model.eval()\n"
        "prepared = torch.ao.quantization.prepare(model)\n"
        "for x in data:\n"
        "    prepared(x)\n"
        "q = torch.ao.quantization.convert(prepared)\n"
        "q = q.cuda()\n"
    )
    read = read_steps(source)
    kinds = [(s.kind, s.line) for s in read.steps if s.kind != R.USE]
    assert kinds == [(R.ENGINE, 3), (R.EVAL, 4), (R.PREPARE, 5), (R.CONVERT, 8), (R.TO_CUDA, 9)]
    assert read.of(R.ENGINE)[0].detail == "qnnpack"
    assert any(s.model == "prepared" and s.line == 7 for s in read.of(R.USE))


def test_lines_that_lost_their_indentation_are_read_one_by_one_as_not_run():
    read = read_steps("", loose_lines=[(10, "torch.quantization.prepare(model, inplace=True)"), (11, "def f(:")])
    [step] = read.steps
    assert step.kind == R.PREPARE and step.line == 10 and step.ran is False


def test_static_readings_of_each_rule():
    source = (
        "import torch\n"  # 1
        "from torch._export import capture_pre_autograd_graph\n"  # 2
        "torch.backends.quantized.engine = 'qnnpack'\n"  # 3
        "class Net(torch.nn.Module):\n"  # 4
        "    def __init__(self):\n"  # 5
        "        super().__init__()\n"  # 6
        "        self.quant = torch.ao.quantization.QuantStub()\n"  # 7
        "    def forward(self, x):\n"  # 8
        "        return self.quant(x) + x\n"  # 9
        "model = Net()\n"  # 10
        "fx = torch.ao.quantization.quantize_fx.prepare_fx(model, {}, (x,))\n"  # 11
        "p = torch.ao.quantization.prepare(model)\n"  # 12
        "q = torch.ao.quantization.convert(p)\n"  # 13
        "q.to('cuda')\n"  # 14
        "d = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Conv2d, torch.nn.Linear})\n"  # 15
    )
    found = _rules(_text_facts(source))
    assert {code: [f.location.line for f in fs] for code, fs in found.items()} == {
        "QD001": [13],
        "QD003": [3],
        "QD006": [11],
        "QD007": [15],
        "QD009": [11],
        "QD011": [9],
        "QD015": [14],
        "QD017": [2],
    }
    for code, findings in found.items():
        for finding in findings:
            assert finding.evidence["basis"] == STATIC_BASIS
            assert finding.severity is (Severity.ERROR if code == "QD017" else Severity.WARNING), code


def test_a_healthy_script_read_statically_gets_no_finding():
    source = (
        "import torch\n"
        "torch.backends.quantized.engine = 'x86'\n"
        "model.eval()\n"
        "model.qconfig = torch.ao.quantization.get_default_qconfig('x86')\n"
        "torch.ao.quantization.fuse_modules(model, [['conv', 'bn', 'relu']], inplace=True)\n"
        "prepared = torch.ao.quantization.prepare(model)\n"
        "with torch.no_grad():\n"
        "    for images, _ in loader:\n"
        "        prepared(images)\n"
        "quantized = torch.ao.quantization.convert(prepared)\n"
        "quantized(images)\n"
    )
    assert run_from_text(_text_facts(source), []) == []


def test_qnnpack_is_not_a_finding_on_arm():
    assert "QD003" not in _rules(_text_facts("torch.backends.quantized.engine = 'qnnpack'\n", machine="aarch64"))


def test_a_step_that_ran_on_a_checked_model_is_the_runs_to_judge_and_a_run_finding_is_not_repeated():
    source = "import torch\np = torch.ao.quantization.prepare(model)\nq = torch.ao.quantization.convert(p)\n"
    ran = _text_facts(source, modules=[mod("fc", "Linear", F.QUANTIZED)])
    assert "QD001" not in _rules(ran)  # both statements ran: the run's QD001 decides
    not_run = replace(ran.target.static_read.steps[1], ran=False)
    steps = [ran.target.static_read.steps[0], not_run, *ran.target.static_read.steps[2:]]
    unrun = replace(ran, target=replace(ran.target, static_read=R.StaticRead(steps, "/r/report.md")))
    assert "QD001" in _rules(unrun)
    from qdoctor.diagnose.registry import get_rule

    qd001 = get_rule("QD001")
    assert qd001 is not None
    run_finding = qd001.finding("from the run")
    assert not [f for f in run_from_text(unrun, [run_finding]) if f.rule == "QD001"]


# ------------------------------------------------------------------------------------------ end to end, small models


def test_a_healthy_report_missing_its_imports_gets_no_error_and_no_crash_from_the_stand_ins(tmp_path):
    from conftest import run_check

    report_md = tmp_path / "issue.md"
    report_md.write_text(
        "My dynamic model:\n\n```python\n"
        "float_model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()\n"
        "quantized_model = tq.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)\n"
        "example_inputs = (torch.randn(2, 16),)\n"
        "print(quantized_model(*example_inputs).shape)\n"
        "```\n",
        encoding="utf-8",
    )
    report = run_check(report_md)
    assert {s.kind for s in report.facts.target.substitutions} == {"import"}
    assert report.facts.crash is None and not report.facts.target.script_errors
    assert not [f for f in report.findings if f.severity is Severity.ERROR]


def test_a_recurrent_model_with_init_hidden_and_no_call_gets_its_state_from_init_hidden(tmp_path):
    from conftest import run_check

    report_md = tmp_path / "post.md"
    report_md.write_text(
        "```python\nimport torch\nfrom torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.rnn = nn.LSTM(8, 8, 2)\n"
        "        self.fc = nn.Linear(8, 3)\n\n"
        "    def forward(self, x, hidden):\n"
        "        out, hidden = self.rnn(x, hidden)\n"
        "        return self.fc(out), hidden\n\n"
        "    def init_hidden(self, bsz):\n"
        "        return (torch.zeros(2, bsz, 8), torch.zeros(2, bsz, 8))\n\n"
        "model = torch.ao.quantization.quantize_dynamic(Net().eval(), {nn.LSTM, nn.Linear})\n"
        "```\n",
        encoding="utf-8",
    )
    report = run_check(report_md)
    assert "init_hidden" in (report.facts.target.inputs_inferred or "")
    assert report.facts.crash is None


def test_a_model_built_with_a_chained_eval_is_not_said_to_be_prepared_in_train_mode():
    source = (
        "model = nn.Sequential(nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3)).eval()\n"
        "prepared = prepare_fx(model, qconfig_mapping, (x,))\n"
    )
    assert "QD009" not in _rules(_text_facts(source))
    assert "QD009" in _rules(_text_facts(source.replace(".eval()", "")))  # built in train mode: still found


def test_a_step_that_ran_and_raised_is_the_runs_crash_not_a_static_finding():
    source = "model = Net()\nprepared = prepare_fx(model, qconfig_dict)\n"
    facts = _text_facts(source)
    assert "QD006" in _rules(facts)  # prepared and never converted, read from the text
    raised = CrashInfo("TypeError", "prepare_fx() missing 1 required positional argument", "load", line=2)
    facts = replace(facts, target=replace(facts.target, script_errors=[raised]))
    assert "QD006" not in _rules(facts)


def test_torchao_dynamic_int8_without_any_compile_is_read_as_eager_activation_quantization():
    source = "from torchao.quantization import quantize_, Int8DynamicActivationInt8WeightConfig\n" + (
        "quantize_(model, Int8DynamicActivationInt8WeightConfig())\n"
    )
    [finding] = _rules(_text_facts(source))["QD013"]
    assert finding.location.line == 2 and finding.evidence["kind"] == "eager-activation-quantization"
    assert "torch.compile(model)" in finding.fix
    for compiled in ("model = torch.compile(model)\n", "model.compile()\n"):
        assert "QD013" not in _rules(_text_facts(source + compiled))
    weight_only = source.replace("Int8DynamicActivationInt8WeightConfig()", "Int8WeightOnlyConfig()")
    assert "QD013" not in _rules(_text_facts(weight_only))
