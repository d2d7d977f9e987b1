"""qdoctor's pytest plugin (entry point ``pytest11``): the ``qdoctor_check`` fixture and ``--qdoctor-reports=DIR``.

    def test_int8_model(qdoctor_check):
        qdoctor_check(quantized_model, example_inputs, float_model=float_model, min_speedup=1.5)

``qdoctor_check`` takes the arguments of qdoctor.testing.assert_healthy and fails the test with the Markdown report.
With ``--qdoctor-reports=DIR`` the report of every failing check is also kept in DIR, as Markdown, HTML and JSON
files named after the test. Importing this module imports neither torch nor the rest of qdoctor: pytest loads it in
every run of a project that has qdoctor installed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from qdoctor.report.model import Report

OPTION = "--qdoctor-reports"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qdoctor", "qdoctor (quantized model checks)")
    group.addoption(
        OPTION,
        dest="qdoctor_reports",
        metavar="DIR",
        default=None,
        help="Keep the report of every failing qdoctor_check in DIR (Markdown, HTML and JSON, named after the test).",
    )


def report_stem(nodeid: str, index: int) -> str:
    """A file name for the ``index``-th check of test ``nodeid``: "tests/test_m.py::test_a[x]" -> "test_m.py-test_a-x"."""
    name = nodeid.rsplit("/", 1)[-1]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "qdoctor"
    return stem if index == 0 else f"{stem}-{index + 1}"


class QdoctorCheck:
    """The ``qdoctor_check`` fixture: call it like qdoctor.testing.assert_healthy. ``reports`` holds the Reports of
    this test's checks, ``kept`` the files written for the failing ones."""

    def __init__(self, nodeid: str, reports_dir: Path | None) -> None:
        self.nodeid, self.reports_dir = nodeid, reports_dir
        self.reports: list[Report] = []
        self.kept: list[Path] = []

    def __call__(self, model: Any, example_inputs: Any, **options: Any) -> Report:
        from qdoctor.testing import UnhealthyModelError, assert_healthy

        try:
            report = assert_healthy(model, example_inputs, **options)
        except UnhealthyModelError as error:
            self.reports.append(error.report)
            if self.reports_dir is not None:
                self._keep(error)
            raise
        self.reports.append(report)
        return report

    def _keep(self, error: Any) -> None:
        from qdoctor.files import write_text_atomic
        from qdoctor.report.render import OutputFormat, render

        assert self.reports_dir is not None
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        stem = report_stem(self.nodeid, len(self.reports) - 1)
        report = error.report
        for suffix, text in (
            (".md", str(error)),
            (".html", render(report, OutputFormat.html)),
            (".json", render(report, OutputFormat.json)),
        ):
            path = self.reports_dir / f"{stem}{suffix}"
            write_text_atomic(path, text)
            self.kept.append(path)
        error.args = (f"{error.args[0]}\n\n(qdoctor kept this report in {self.kept[-3].parent}/{stem}.*)",)


@pytest.fixture
def qdoctor_check(request: pytest.FixtureRequest) -> QdoctorCheck:
    """Check a quantized model; fail the test with the Markdown report (see qdoctor.testing.assert_healthy)."""
    folder = request.config.getoption("qdoctor_reports")
    reports_dir = request.config.invocation_params.dir / folder if folder else None  # as given: relative to cwd
    return QdoctorCheck(request.node.nodeid, reports_dir)
