"""examples/triage.ipynb runs top to bottom on a real Jupyter kernel (nbclient + ipykernel, the `dev` extras) and
shows the report inline as self-contained HTML."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "triage.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_notebook_runs_and_shows_the_html_report(tmp_path, monkeypatch):
    # the kernel is a new process: it finds this checkout's qdoctor through PYTHONPATH, as the test process does
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(html) == 1, "the report cell displays one HTML report"
    report = html[0]
    assert report.startswith('<div class="qdoctor-report">')
    assert "QD004" in report and "unfused-modules" in report and "<svg" in report
    assert re.search(r'class="verified">verified', report), "the fuse fix was applied to a copy and measured"
    for loads_something in ("<script", "<link", "<iframe", "@import", "url(", 'src="http'):
        assert loads_something not in report, loads_something
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert re.search(r"^QD004 warning conv \| verified speedup: [0-9.]+$", text, re.M), text
    assert "ok: False" in text
    assert text.rstrip().endswith("[] ok: True"), text  # the fused model, checked again
