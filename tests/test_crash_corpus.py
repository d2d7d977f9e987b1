"""The crash table against the errors people report: fixtures/crashes/ holds one small script per distinct
quantization error message found in public PyTorch issues and forum threads, each reproducing it on the installed
torch (its header: the link, the message, the rule that must explain it). Every script is checked end to end
(no timing) and the crash must be explained by that rule; QD014 unexplained-crash only for the control that is
truly not a quantization failure.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import FIXTURES, codes, run_check

from qdoctor.diagnose.crash_causes import first_line

CRASHES = sorted((FIXTURES / "crashes").glob("*.py"))
_HEADER = re.compile(r"^# (link|message|expect): (.+)$", re.M)


def header(path: Path) -> dict[str, str]:
    return dict(_HEADER.findall(path.read_text()))


def test_the_corpus_holds_30_distinct_messages_with_links():
    headers = [header(p) for p in CRASHES]
    assert all({"link", "message", "expect"} <= h.keys() for h in headers), "every fixture names link/message/expect"
    assert all(h["link"].startswith("https://") for h in headers)
    assert len({h["message"] for h in headers}) >= 30


@pytest.fixture(scope="module")
def crash_reports():
    cache: dict[Path, object] = {}

    from qdoctor.load.options import LoadOptions

    def get(path: Path):
        # as reported: no offline stand-ins (a CUDA stand-in would move `.cuda()` to the CPU and hide the error)
        if path not in cache:
            cache[path] = run_check(path, profile=False, load=LoadOptions(stand_ins=False))
        return cache[path]

    return get


@pytest.mark.parametrize("path", CRASHES, ids=[p.stem for p in CRASHES])
def test_each_reported_error_reproduces_and_maps_to_its_rule(path, crash_reports):
    expected = header(path)
    report = crash_reports(path)
    crashes = [
        c for c in (report.facts.target.load_crash, report.facts.trace.crash if report.facts.trace else None) if c
    ]
    # the fixture still reproduces the reported error on this torch
    assert any(expected["message"] in f"{c.type}: {c.message}" for c in crashes), [
        first_line(c.message) for c in crashes
    ]
    found = codes(report)
    assert expected["expect"] in found, found
    if expected["expect"] != "QD014":
        assert "QD014" not in found, [f.message for f in report.findings if f.rule == "QD014"]
