"""A paste that lost its indentation gets it back by guess (qdoctor.load.report_indent), and a plain-text report
runs the re-indented lines instead of leaving its model out (qdoctor.load.report_text). Pure text work."""

from __future__ import annotations

from qdoctor.load.report_indent import reindent
from qdoctor.load.report_text import extract

FLAT_MODEL = """\
class SimpleModel(nn.Module):
def __init__(self):
super().__init__()
self.fc = nn.Linear(1024, 1024)
def forward(self, x):
return self.fc(x)
model_fp32 = SimpleModel()
model_int8 = torch.quantization.quantize_dynamic(
model_fp32,
{nn.Linear},
dtype=torch.qint8
)"""


def test_methods_return_and_the_statement_after_the_class_get_their_depth():
    lines = reindent(FLAT_MODEL.split("\n"))
    assert lines[:7] == [
        "class SimpleModel(nn.Module):",
        "    def __init__(self):",
        "        super().__init__()",
        "        self.fc = nn.Linear(1024, 1024)",
        "    def forward(self, x):",
        "        return self.fc(x)",
        "model_fp32 = SimpleModel()",
    ]
    assert lines[7] == "model_int8 = torch.quantization.quantize_dynamic("
    assert lines[8].startswith("    model_fp32")  # inside the open bracket: a continuation


def test_else_goes_back_to_its_if_and_a_comment_after_a_loop_body_ends_the_loop():
    flat = [
        "def calibrate(m):",
        "if m.training:",
        "m.eval()",
        "else:",
        "pass",
        "with torch.no_grad():",
        "for images, _ in loader:",
        "prepared(images)",
        "# convert",
        "quantized = convert(prepared)",
    ]
    lines = reindent(flat)
    assert lines[1] == "    if m.training:" and lines[3] == "    else:" and lines[4] == "        pass"
    assert lines[5] == "    with torch.no_grad():"  # `pass` closed the else: back in the function
    assert lines[7] == "            prepared(images)"
    assert lines[9] == "    quantized = convert(prepared)"  # after the loop, not in it


def test_a_plain_text_post_whose_code_lost_its_indentation_runs_its_model_with_a_note():
    text = "A post about dynamic quantization.\nimport torch\nimport torch.nn as nn\n" + FLAT_MODEL + "\nThe end.\n"
    extracted = extract(text, "post.txt")
    assert "class SimpleModel(nn.Module):\n    def __init__(self):" in extracted.source
    assert "model_fp32 = SimpleModel()" in extracted.source
    assert not [s for s in extracted.skipped if "lost the indentation" in s]
    [note] = extracted.reindented
    assert note.startswith("lines 4-") and "re-indented by guess" in note
    assert compile(extracted.source, "post.txt", "exec")


def test_lines_that_do_not_parse_even_re_indented_stay_not_run():
    text = "import torch\nSome prose.\nwith torch.no_grad():\nfor x in loader\nmodel(x)\n"  # `for` lacks its colon
    extracted = extract(text, "post.txt")
    assert not extracted.reindented
    assert any("lost the indentation" in s for s in extracted.skipped)


def test_what_the_guessed_lines_raise_is_a_gap_not_a_crash_of_the_report(tmp_path):
    from conftest import run_check

    post = tmp_path / "post.txt"
    post.write_text(
        "A post whose paste lost the indentation.\n"
        "import torch\n"
        "import torch.nn as nn\n"
        "class M(nn.Module):\n"
        "def __init__(self):\n"
        "super().__init__()\n"
        "self.fc = nn.Linear(4, 4)\n"
        "def forward(self, x):\n"
        "return self.fc(x)\n"
        "model = torch.ao.quantization.quantize_dynamic(M(), {nn.Linear}, dtype=torch.qint8)\n"
        "with torch.no_grad():\n"
        "for step in range(2):\n"
        "out = model(torch.randn(2, 3))\n",  # a shape the model does not take, in lines placed by guess
        encoding="utf-8",
    )
    report = run_check(post, profile=False)
    target = report.facts.target
    assert target.subject_name == "model" and not target.script_errors
    assert "QD014" not in {f.rule for f in report.findings}
    assert any(gap.startswith("line 11: RuntimeError") and "re-indented by guess" in gap for gap in target.left_out)
