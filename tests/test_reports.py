"""Bug reports as written (issue 16): Markdown and text targets, stdin, keep-going past errors, offline stand-ins.

The seed copies live in fixtures/reports/ (seed 000's and seed 004's articles as published) and fixtures/ (seed 000's
code as pasted, indentation restored). Sockets are blocked for the whole session (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import FIXTURES, ROOT, as_json, codes, findings_of, run_check

from qdoctor.errors import TargetError
from qdoctor.load.options import LoadOptions
from qdoctor.load.report_text import extract
from qdoctor.load.statements import compile_statements, run_statements

REPORTS = FIXTURES / "reports"
ISSUE_MD = REPORTS / "issue_mobilenet_qnnpack.md"


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "qdoctor", *args], input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=900
    )


# ------------------------------------------------------------------------------------------ reading a report


def test_markdown_runs_python_and_unlabelled_python_fences_in_order_and_keeps_the_report_line_numbers():
    text = (
        "Title: slow int8\n"  # 1
        "```bash\n"  # 2
        "pip install torch\n"  # 3
        "```\n"  # 4
        "```python\n"  # 5
        "import torch\n"  # 6
        "x = torch.ones(2)\n"  # 7
        "```\n"  # 8
        "Output:\n"  # 9
        "```\n"  # 10
        "tensor([1., 1.])\n"  # 11: an unlabelled fence that is not a statement worth running
        "Traceback (most recent call last):\n"  # 12: ... and does not parse
        "```\n"  # 13
        "- item\n"  # 14
        "  ```py\n"  # 15: inside a list item, indented
        "  y = x * 2\n"  # 16
        "  ```\n"  # 17
        "```\n"  # 18
        "print(y)\n"  # 19: unlabelled and parses
        "```\n"  # 20
    )
    script = extract(text, "issue.md")
    assert script.kind == "markdown"
    assert script.ran == [(6, 7), (16, 16), (19, 19)]
    lines = script.source.split("\n")
    assert lines[5] == "import torch" and lines[15] == "y = x * 2" and lines[18] == "print(y)"
    assert not any(lines[i].strip() for i in (0, 2, 10, 11))  # prose, shell and output are blank


def test_text_without_fences_yields_the_runs_that_parse_and_skips_a_proposed_fix():
    # seed 004 as published: the reproduction runs; the article's "fixed code" only re-binds its names
    script = extract((REPORTS / "seed004_article.txt").read_text(encoding="utf-8"), "seed004")
    assert script.kind == "text"
    assert script.ran == [(11, 59)]
    assert any("69-71" in s and "quantized_model" in s for s in script.skipped)
    lines = script.source.split("\n")
    assert lines[10] == "import torch" and lines[34] == ""  # the heading "性能测试" between the two runs is blank


def test_text_whose_block_lost_its_indentation_is_re_indented_by_guess_and_said():
    script = extract((REPORTS / "seed000_article.txt").read_text(encoding="utf-8"), "seed000")
    assert script.ran[0] == (4, 12)  # imports and the hub model, not the title above them
    assert not any("lost the indentation" in s for s in script.skipped)
    assert any(s.startswith("lines 29-") and "re-indented by guess" in s for s in script.reindented)
    source = script.source.split("\n")
    assert source[28] == "def benchmark_model(model, input_tensor, iterations=100):"
    assert source[29] == "    model.eval()" and source[42] == "input_tensor = torch.randn(1, 3, 224, 224)"
    assert {29, 30, 41} <= script.guessed_lines and not {43, 45} & script.guessed_lines  # the margin: as pasted


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "the report is empty"),
        (b"  \n\n", "the report is empty"),
        (b"Hello,\n\nmy quantized model is slow. Any idea why?\n\nThanks!\n", "no Python found in the report"),
        (bytes(range(256)) * 4, "binary data"),
        ("caf\u00e9 \xff".encode("latin-1"), "binary data"),
    ],
)
def test_bad_reports_give_one_line(tmp_path, data, message):
    path = tmp_path / "issue.md"
    path.write_bytes(data)
    with pytest.raises(TargetError, match=message) as info:
        run_check(path, profile=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "data, message",
    [(b"", "-: the report on standard input is empty"), (bytes(range(256)), "- (standard input): binary data")],
)
def test_bad_reports_on_stdin_give_one_line_and_exit_2(data, message):
    result = _cli("check", "-", "--no-bench", stdin=data)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------ keep going


def _run(source: str, seconds: float | None = None) -> tuple[dict, list[tuple[str, int, int | None]]]:
    namespace: dict = {}
    errors: list[tuple[str, int, int | None]] = []
    statements = compile_statements(source, "<test>")
    run_statements(
        statements, namespace, lambda e, line, after: errors.append((type(e).__name__, line, after)), seconds
    )
    return namespace, errors


def test_each_statement_runs_after_an_error_and_names_it_would_have_bound_stay_unbound():
    namespace, errors = _run("a = 1\nb = 1 / 0\nc = b + 1\nd = a + 1\nraise SystemExit(3)\ne = 5\n")
    assert namespace["a"] == 1 and namespace["d"] == 2 and "b" not in namespace and "c" not in namespace
    assert errors == [("ZeroDivisionError", 2, None), ("NameError", 3, 2), ("SystemExit", 5, None)]
    assert "e" not in namespace  # sys.exit ends the script, as it would


def test_a_statement_past_its_time_budget_is_stopped_and_the_next_runs():
    namespace, errors = _run("import time\nwhile True:\n    time.sleep(0.01)\nafter = 1\n", seconds=0.3)
    assert errors == [("StatementTimeout", 2, None)] and namespace["after"] == 1


def test_keep_going_fixture_reports_every_error_at_its_line_and_checks_the_model(check_fixture):
    report = check_fixture("keep_going.py")
    [qd017] = findings_of(report, "QD017")
    assert qd017.location.line == 13 and "get_default_qconfig_mapping" in qd017.fix
    [qd014] = findings_of(report, "QD014")
    assert qd014.location.line == 15 and "FileNotFoundError" in qd014.message
    assert {"QD001", "QD004"} <= set(codes(report))  # the statements after the errors ran
    errors = report.facts.target.script_errors
    assert [(e.type, e.line, e.follows_from) for e in errors] == [
        ("AttributeError", 13, None),
        ("FileNotFoundError", 15, None),
        ("NameError", 21, 15),  # print(len(labels)): follows from line 15, not a finding of its own
    ]


def test_stop_on_error_keeps_the_old_behaviour():
    report = run_check(FIXTURES / "keep_going.py", profile=False, load=LoadOptions(keep_going=False))
    assert codes(report) == ["QD017"]
    assert report.facts.target.script_errors == []
    assert any("the globals defined before it were used" in n for n in report.notes)


# ------------------------------------------------------------------------------------------ stand-ins


@pytest.mark.parametrize(
    "fixture, kind, code",
    [
        ("standin_hub_resnet.py", "hub-model", "QD007"),
        ("standin_pretrained_weights.py", "pretrained-weights", "QD001"),
        ("standin_checkpoint.py", "checkpoint", "QD004"),
        ("standin_datasets.py", "dataset", "QD010"),
        ("standin_cuda.py", "cuda", "QD015"),
        ("quantized_on_cuda.py", "cuda", "QD015"),
    ],
)
def test_each_stand_in_is_listed_and_the_cause_still_found(check_fixture, fixture, kind, code):
    report = check_fixture(fixture)
    assert code in codes(report)
    subs = report.facts.target.substitutions
    assert subs and all(s.kind == kind for s in subs) and all(s.line for s in subs)
    doc = as_json(report)
    assert [s["kind"] for s in doc["substitutions"]] == [s.kind for s in subs]
    assert any("valid for speed" in n and "not for accuracy" in n for n in report.notes)
    assert report.facts.target.script_errors == []  # nothing the stand-ins cover raised


def test_dataset_stand_ins_give_the_sample_shape_the_transforms_produce(check_fixture):
    subs = check_fixture("standin_datasets.py").facts.target.substitutions
    assert [s.requested.split("(")[0] for s in subs] == ["FashionMNIST", "ImageFolder"]
    assert all("1x28x28" in s.instead for s in subs)  # ImageFolder: 3x256x256 images -> Grayscale, Resize(28)


def test_stand_in_for_cuda_still_reaches_qd015(check_fixture):
    [finding] = findings_of(check_fixture("standin_cuda.py"), "QD015")
    assert finding.location.line == 17 and "no GPU" in finding.message


def test_no_stand_ins_runs_the_script_as_written():
    report = run_check(FIXTURES / "standin_checkpoint.py", profile=False, load=LoadOptions(stand_ins=False))
    assert report.facts.target.substitutions == []
    [error, *_] = report.facts.target.script_errors
    assert error.type == "FileNotFoundError" and error.line == 19
    assert "QD014" in codes(report)


# ------------------------------------------------------------------------------------------ the seeds


def test_seed004_article_gives_the_findings_of_its_fixture_with_fix_all_measured(check_fixture):
    as_written = check_fixture("seed004_as_written.py")
    report = run_check(REPORTS / "seed004_article.txt", bench=True, verify=True)
    assert codes(report) == codes(as_written) == ["QD001", "QD002", "QD004"]
    assert [f.location.line for f in report.findings] == [17, 17, 17]  # the article's line of nn.Conv2d(3, 64, ...)
    fix_all = report.prescription.fix_all
    assert fix_all.applied and fix_all.after_ms > 0 and fix_all.float_ms > 0
    assert any(n.startswith("ran its runs of lines that parse as Python: lines 11-59") for n in report.notes)


def test_seed000_as_pasted_missing_quantize_static_stand_ins_and_linear_only_dynamic():
    # The script's own timing loops (110 ResNet-50 forwards each) are stopped after 1 s: qdoctor measures speed.
    report = run_check(FIXTURES / "seed000_as_pasted.py", load=LoadOptions(statement_seconds=1.0))
    doc = as_json(report)
    assert report.exit_code() == 1
    [qd017] = [f for f in doc["findings"] if f["rule"] == "QD017"]
    assert qd017["location"]["line"] == 3 and "quantize_static" in qd017["message"]
    assert "prepare(model)" in qd017["fix"] and "quantize(model, run_fn, run_args)" in qd017["fix"]
    assert {s["kind"] for s in doc["substitutions"]} == {"hub-model", "dataset"}
    [qd007] = [f for f in doc["findings"] if f["rule"] == "QD007"]
    assert doc["target"]["subject"] == "model_dynamic" and qd007["location"]["line"] == 11
    assert qd007["evidence"]["best_case_speedup"] < 1.01  # only the fc layer is int8: ~1.0x at best
    assert any("valid for speed" in n for n in doc["notes"])


def test_markdown_issue_from_a_file_gets_its_root_cause(check_fixture):
    report = check_fixture(ISSUE_MD)
    assert "QD003" in codes(report)  # qnnpack on x86
    assert {s.kind for s in report.facts.target.substitutions} == {"pretrained-weights", "dataset"}
    assert report.facts.target.report_text.ran == [(20, 33), (39, 56)]


def test_markdown_issue_from_stdin_gets_its_root_cause():
    result = _cli("check", "-", "--no-bench", "--no-verify", "--no-profile", "-f", "json", stdin=ISSUE_MD.read_bytes())
    assert result.returncode == 1, result.stderr.decode()
    doc = json.loads(result.stdout)
    assert doc["target"]["spec"] == "-" and doc["report_text"]["stdin"] is True
    assert "QD003" in [f["rule"] for f in doc["findings"]]
    assert {s["kind"] for s in doc["substitutions"]} == {"pretrained-weights", "dataset"}
    assert any("lines 20-33, 39-56 of standard input" in n for n in doc["notes"])


def test_compare_reads_reports_and_lists_its_stand_ins():
    from qdoctor.compare import CompareOptions, compare

    result = compare(str(FIXTURES / "standin_hub_resnet.py"), CompareOptions(recipes="fp32,dynamic", bench_time=0.05))
    assert [s.kind for s in result.substitutions] == ["hub-model"]
    assert any("valid for speed" in n for n in result.notes)
