"""Reports print paths the way ruff and pytest do: relative to the current directory when the file is under it. A
report pasted into an issue, the README's example or a CI log never shows the machine it was made on; the JSON
document keeps the absolute path of the target in a field of its own (``target.file_absolute``)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import FIXTURES, ROOT, run_check

from qdoctor.facts.location import display_path
from qdoctor.report.render import OutputFormat, render

# keep_going: several statements raise (notes name lines and files, QD014 lists frames); resnet_block_add_crash:
# a crash inside library code (the library line and the user's line)
CHECKED = ["keep_going.py", "resnet_block_add_crash.py"]


def test_display_path(tmp_path):
    inside = tmp_path / "models" / "net.py"
    assert display_path(str(inside), str(tmp_path)) == "models/net.py"
    assert display_path("/elsewhere/lib.py", str(tmp_path)) == "/elsewhere/lib.py"
    assert display_path("models/net.py", str(tmp_path)) == "models/net.py" or os.getcwd() != str(tmp_path)


def test_an_installed_library_is_named_from_its_package(tmp_path):
    library = str(tmp_path / ".venv" / "lib" / "python3.11" / "site-packages" / "torchvision" / "models" / "resnet.py")
    assert display_path(library, str(tmp_path)) == "torchvision/models/resnet.py"


def test_display_path_defaults_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(str(tmp_path / "a" / "b.py")) == "a/b.py"


@pytest.fixture(scope="module")
def reports_from_the_root():
    """The fixtures checked, and their reports rendered, from the repository root (as a user runs qdoctor)."""
    before = os.getcwd()
    os.chdir(ROOT)
    try:
        reports = {name: run_check(FIXTURES / name, profile=False) for name in CHECKED}
        texts = {
            (name, fmt.value): render(report, fmt, width=110, color=False)
            for name, report in reports.items()
            for fmt in OutputFormat
        }
        from qdoctor.run.batch import CHECKED as DONE
        from qdoctor.run.batch import Outcome
        from qdoctor.run.summary import render_json, render_table

        outcomes = [Outcome(f"fixtures/{name}", DONE, report=report) for name, report in reports.items()]
        texts[("batch", "json")] = render_json(outcomes)
        texts[("batch", "table")] = render_table(outcomes)
    finally:
        os.chdir(before)
    return reports, texts


@pytest.mark.parametrize("name", CHECKED)
@pytest.mark.parametrize("fmt", [f.value for f in OutputFormat])
def test_no_format_prints_the_machine_path(reports_from_the_root, name, fmt):
    _, texts = reports_from_the_root
    text = texts[(name, fmt)]
    if fmt == "json":  # the one field that keeps it
        document = json.loads(text)
        assert document["target"]["file_absolute"] == str(FIXTURES / name)
        assert document["target"]["file"] == f"fixtures/{name}"
        document["target"].pop("file_absolute")
        text = json.dumps(document)
    assert str(ROOT) not in text


def test_the_batch_summary_prints_no_machine_path(reports_from_the_root):
    _, texts = reports_from_the_root
    document = json.loads(texts[("batch", "json")])
    for report in document["reports"]:
        report["target"].pop("file_absolute")
    assert str(ROOT) not in json.dumps(document)
    assert str(ROOT) not in texts[("batch", "table")]


def test_the_reports_name_their_files(reports_from_the_root):
    """Relative, not dropped: the findings still point at the script."""
    reports, texts = reports_from_the_root
    assert "fixtures/keep_going.py" in texts[("keep_going.py", "markdown")]
    sarif = json.loads(texts[("resnet_block_add_crash.py", "sarif")])
    uris = {
        location["physicalLocation"]["artifactLocation"]["uri"]
        for result in sarif["runs"][0]["results"]
        for location in result.get("locations", [])
    }
    assert "fixtures/resnet_block_add_crash.py" in uris


def test_compare_formats_print_no_machine_path(monkeypatch):
    from factsbuild import env

    from qdoctor.compare.reporters import CompareFormat
    from qdoctor.compare.reporters import render as render_compare
    from qdoctor.compare.result import FAILED, FP32, Candidate, CompareResult, Limits, Recommendation

    monkeypatch.chdir(ROOT)
    script = str(FIXTURES / "compare_resnet18.py")
    failed = Candidate(
        "eager-x86",
        "eager",
        "x86",
        "eager mode",
        status=FAILED,
        phase="run",
        reason="raised",
        traceback=f'Traceback (most recent call last):\n  File "{script}", line 12, in forward\n    x = a + b\n',
    )
    result = CompareResult(
        spec=script,
        file=script,
        float_name="float_model",
        input_shapes=[[1, 3, 8, 8]],
        environment=env(),
        limits=Limits(),
        candidates=[Candidate(FP32, "fp32", None, "float"), failed],
        recommendation=Recommendation(FP32, "keep fp32"),
        calibration_source="random",
        check_source="random",
        metric_name=None,
    )
    for fmt in CompareFormat:
        text = render_compare(result, fmt)
        if fmt == CompareFormat.json:
            document = json.loads(text)
            assert document["target"].pop("file_absolute") == script
            assert 'File "fixtures/compare_resnet18.py", line 12' in document["candidates"][1]["traceback"]
            text = json.dumps(document)
        assert str(ROOT) not in text, fmt
