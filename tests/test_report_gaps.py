"""What a bug report leaves out is a gap, not a crash (qdoctor.load.left_out): names it never defines or defines further
down, packages outside the quantization stack this machine lacks, downloads qdoctor cannot make offline; and the forms
of its text that are not code (notebook magics, CJK prose that parses, a traceback's echoed source lines). Pure text
work, plus one stand-in call with torch.hub's network patched out."""

from __future__ import annotations

import pytest

from qdoctor.facts import report as R
from qdoctor.load.left_out import OfflineUnavailable, bound_anywhere, left_out
from qdoctor.load.report_text import extract
from qdoctor.load.standin_names import stand_in_names
from qdoctor.load.standins import StandIns
from qdoctor.load.static_read import read_steps

SOURCE = (
    "import torch\n"  # 1
    "train(model)\n"  # 2: train is defined at line 4, model nowhere
    "\n"  # 3
    "def train(m, epochs=1):\n"  # 4
    "    for batch in loader:\n"  # 5
    "        m(batch)\n"  # 6
)


def name_error(name: str) -> NameError:
    return NameError(f"name '{name}' is not defined", name=name)


def test_bound_anywhere_knows_every_binding_and_its_first_line():
    bound = bound_anywhere(SOURCE)
    assert bound["torch"] == 1 and bound["train"] == 4 and bound["m"] == 4 and bound["batch"] == 5
    assert "model" not in bound and "loader" not in bound


def test_a_name_never_defined_or_defined_further_down_is_left_out_in_a_report():
    bound = bound_anywhere(SOURCE)
    assert "never defined" in (left_out(name_error("model"), 2, bound) or "")
    assert "before the report defines it (line 4)" in (left_out(name_error("train"), 2, bound) or "")
    assert left_out(name_error("torch"), 2, bound) is None  # bound before: a real NameError of the code
    assert left_out(name_error("model"), 2, None) is None  # a script run as written owns its NameErrors


def test_a_missing_package_is_left_out_unless_it_is_part_of_the_quantization_stack():
    bound = bound_anywhere(SOURCE)
    plot = ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")
    moved = ModuleNotFoundError("No module named 'torch.ao.quantization.quantize_pt2e'", name="torch.ao.quantization")
    assert "not installed here" in (left_out(plot, 3, bound) or "")
    assert left_out(moved, 3, bound) is None  # a moved API is diagnosed (QD017)


def test_a_file_of_the_authors_disk_is_left_out_in_a_report_not_a_crash(tmp_path):
    bound = bound_anywhere(SOURCE)
    for exc in (
        FileNotFoundError(2, "No such file or directory", "fp32_model.pth"),  # getsize of a file a gap never wrote
        FileNotFoundError(2, "No such file or directory", "exported/r18_quantized.pte"),  # a folder only they have
        NotADirectoryError(20, "Not a directory", "weights/best.pt"),
    ):
        assert "author's disk" in (left_out(exc, 3, bound) or ""), exc
    assert left_out(FileNotFoundError(2, "No such file or directory", "x.pth"), 3, None) is None  # a script's own
    assert left_out(FileNotFoundError("no filename: raised by the code itself"), 3, bound) is None


def test_a_hub_model_outside_torchvision_that_needs_the_network_is_offline_unavailable(monkeypatch, tmp_path):
    import torch.hub

    def no_network(*args: object, **kwargs: object) -> None:
        raise RuntimeError("It looks like there is no internet connection and the repo could not be found in the cache")

    monkeypatch.setattr(torch.hub, "load", no_network)
    stand_ins = StandIns(str(tmp_path / "report.md"))
    with stand_ins.installed(), pytest.raises(OfflineUnavailable) as raised:
        torch.hub.load("ultralytics/yolov5", "yolov5s")
    assert "ultralytics/yolov5" in str(raised.value)
    assert "qdoctor runs offline" in (left_out(raised.value, 8, None) or "")


def test_notebook_magics_are_blanked_so_the_imports_beside_them_run():
    text = "```\n!pip install onnx\nimport torch\n%timeit torch.ones(1)\nx = torch.ones(2)\n```\n"
    script = extract(text, "report.md")
    lines = script.source.splitlines()
    assert lines[2] == "import torch" and lines[4] == "x = torch.ones(2)"
    assert not lines[1].strip() and not lines[3].strip()


def test_cjk_prose_that_parses_as_a_call_is_not_run():
    text = "一、动态量化\n\nimport torch\nm = torch.nn.Linear(4, 4)\n\n可以有更高的精度(因为裁剪范围被精确校准)\n"
    script = extract(text, "post.txt")
    assert "可以有" not in script.source
    assert "m = torch.nn.Linear(4, 4)" in script.source


def test_the_source_lines_a_quoted_traceback_echoes_are_not_read_as_code():
    text = (
        "```\nmodel = prepare_fx(model, qconfig_dict)\n```\n\n"  # 1-3: the code (ran)
        "```\n"  # 5
        'File "test_fx.py", line 37, in <module>\n'  # 6
        "    model = prepare_fx(model, qconfig_dict)\n"  # 7: the traceback echoes the line
        "```\n"
    )
    script = extract(text, "issue.md")
    assert all(line != 7 for line, _ in script.unrun_code)


def test_a_chained_eval_puts_the_model_it_builds_in_eval_mode():
    read = read_steps("model = nn.Sequential(nn.Linear(5, 5)).eval()\nmodel = prepare_fx(model, qconfig_dict)\n")
    [mode] = read.of(R.EVAL)
    assert mode.model == "model" and mode.line == 1


def test_a_well_known_name_used_before_the_block_that_imports_it_is_stood_in():
    source = "class Net(nn.Module):\n    pass\n\nimport torch.nn as nn\nnet = Net()\n"
    values, subs = stand_in_names(source, "report.md")
    assert "nn" in values
    [sub] = subs
    assert "before the report imports it" in sub.requested


def test_a_script_whose_only_model_needs_the_network_says_so_instead_of_no_module(monkeypatch, tmp_path):
    import torch.hub

    from qdoctor.errors import TargetError
    from qdoctor.load.target import load_target

    def no_network(*args: object, **kwargs: object) -> None:
        raise RuntimeError("It looks like there is no internet connection and the repo could not be found in the cache")

    monkeypatch.setattr(torch.hub, "load", no_network)
    script = tmp_path / "yolo.py"
    script.write_text("import torch\nmodel = torch.hub.load('ultralytics/yolov5', 'yolov5s')\n")
    with pytest.raises(TargetError, match="ultralytics/yolov5.*qdoctor runs offline"):
        load_target(str(script))
