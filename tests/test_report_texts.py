"""Bug reports as written (issue 24): public report texts in every form they take (Markdown, a block cut
mid-statement, reStructuredText, HTML <pre>, a Sphinx-Gallery tutorial saved as text, a forum post that lost its
indentation), each in fixtures/reports/texts/ with a sidecar <name>.toml: link, where the text was stored, its forms,
the classes of issue 24 it covers, the expected and absent finding codes. No text may get "could not check"; each of
classes 1-6 is covered by a test on a public text (class 4: see test_class4_*).

Texts run with bench=False; those marked ``slow = true`` (a torchvision model run on stand-in data) are under the
``report_texts_slow`` marker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import codes, run_check

from qdoctor.diagnose.findings import Severity
from qdoctor.diagnose.registry import STATIC_BASIS, TRACEBACK_BASIS
from qdoctor.report.model import Report

tomllib = pytest.importorskip("tomllib")

TEXTS = Path(__file__).resolve().parents[1] / "fixtures" / "reports" / "texts"
SIDECARS = sorted(TEXTS.glob("*.toml"))


def _text(sidecar: Path) -> Path:
    [text] = [p for p in TEXTS.glob(sidecar.stem + ".*") if p.suffix != ".toml"]
    return text


def _spec(sidecar: Path) -> dict:
    return tomllib.loads(sidecar.read_text(encoding="utf-8"))


def _params() -> list:
    params = []
    for sidecar in SIDECARS:
        marks = [pytest.mark.report_texts_slow] if _spec(sidecar).get("slow") else []
        params.append(pytest.param(sidecar, id=sidecar.stem, marks=marks))
    return params


_REPORTS: dict[str, Report] = {}


def report_of(name: str) -> Report:
    """Each text checked once per session (several tests read the same report)."""
    if name not in _REPORTS:
        [sidecar] = [s for s in SIDECARS if s.stem == name]
        _REPORTS[name] = run_check(_text(sidecar))
    return _REPORTS[name]


def test_the_corpus_has_at_least_15_public_texts_each_with_its_link():
    assert len(SIDECARS) >= 15
    for sidecar in SIDECARS:
        spec = _spec(sidecar)
        assert spec["link"].startswith("https://"), sidecar.name
        assert {"expect", "absent", "source", "classes"} <= set(spec), sidecar.name
        _text(sidecar)  # exactly one text beside it
    covered = {c for s in SIDECARS for c in _spec(s)["classes"]}
    assert {1, 2, 3, 5, 6} <= covered


@pytest.mark.parametrize("sidecar", _params())
def test_each_text_gets_a_report_with_its_expected_findings(sidecar):
    spec = _spec(sidecar)
    report = report_of(sidecar.stem)  # a TargetError here is "could not check": the test fails
    found = codes(report)
    assert set(spec["expect"]) <= set(found), (sidecar.stem, found, report.notes)
    assert not set(spec["absent"]) & set(found), (sidecar.stem, found)
    assert report.exit_code() == spec.get("exit_code", 1 if spec["expect"] else 0)
    for finding in report.findings:
        basis = finding.evidence.get("basis")
        if basis == STATIC_BASIS and not finding.evidence.get("certain"):
            assert finding.severity is not Severity.ERROR, finding  # read, not run: a warning at most
        if basis == TRACEBACK_BASIS:
            assert "not reproduced" in finding.message
            assert finding.severity is Severity.WARNING


def _healthy_params() -> list:
    return [p for p in _params() if _spec(p.values[0]).get("healthy")]


@pytest.mark.parametrize("sidecar", _healthy_params())
def test_a_healthy_text_gets_no_error_and_no_invented_crash(sidecar):
    """Texts whose model is healthy (``healthy = true``): no error-level finding, nothing "crashed" that the text's
    code did not raise."""
    report = report_of(sidecar.stem)
    assert not [f for f in report.findings if f.severity is Severity.ERROR], [f.message for f in report.findings]
    assert report.facts.target.load_crash is None and report.facts.crash is None


# ------------------------------------------------------------------------------------------ the six classes


def test_class1_a_block_cut_mid_statement_runs_to_its_last_complete_statement():
    for name in ("gh42113_qnnpack_cut_block", "executorch22069_no_grad_cut_block"):
        report = report_of(name)
        assert any("cut mid-statement" in note for note in report.notes), report.notes
        assert report.facts.target.report_text is not None and report.facts.target.report_text.ran


@pytest.mark.report_texts_slow
def test_class2_a_restructuredtext_tutorial_runs_its_code_blocks():
    report = report_of("tutorial_pt2e_quant_ptq")
    text = report.facts.target.report_text
    assert text is not None and text.kind == "rst" and len(text.ran) > 5


def test_class3_imports_the_fragment_leaves_out_are_stood_in_and_listed():
    report = report_of("discuss138735_times_two")
    stood_in = {s.requested.split("`")[1] for s in report.facts.target.substitutions if s.kind == "import"}
    assert {"nn", "QuantStub", "DeQuantStub"} <= stood_in
    assert not [c for c in report.facts.target.script_errors if c.type == "NameError"]


@pytest.mark.report_texts_slow
def test_class5_a_removed_api_is_the_diagnosis():
    report = report_of("tutorial_pt2e_quant_ptq")
    messages = " ".join(f.message for f in report.findings if f.rule == "QD017")
    assert "capture_pre_autograd_graph" in messages


def test_class6_state_arguments_come_from_the_call_sites_and_the_healthy_recipe_stays_quiet():
    report = report_of("tutorial_dynamic_quantization_recipe")
    target = report.facts.target
    assert target.inputs_origin == "script" and len(target.inputs) == 3  # inputs, (h0, c0)
    assert not [f for f in report.findings if f.severity is Severity.ERROR]
    assert report.facts.crash is None


def test_tracebacks_quoted_without_any_code_are_diagnosed_not_could_not_check():
    report = report_of("gh98596_add_out")
    [finding] = report.findings
    assert finding.rule == "QD011" and finding.evidence["basis"] == TRACEBACK_BASIS
    assert any("no model from this report could be run" in note for note in report.notes)


def test_a_forum_post_that_lost_its_indentation_is_still_read():
    report = report_of("discuss78268_flattened")
    static = {f.rule: f for f in report.findings if f.evidence.get("basis") == STATIC_BASIS}
    assert {"QD001", "QD003"} <= set(static)
    assert static["QD003"].location.line == 8  # the report's own line
