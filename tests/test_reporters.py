"""Every report format: snapshots of one shared sample report, SARIF against the official schema, HTML
self-contained, and the pieces each format must get right.

Update the snapshots after an intended change with:
    QDOCTOR_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_reporters.py
then review `git diff tests/snapshots/`.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import FIXTURES
from sample_report import MODEL_FILE, ROOT, sample_report, sample_rule_docs

from qdoctor.diagnose.findings import Location
from qdoctor.report.render import OutputFormat, render
from qdoctor.report.render.common import module_rows, verified_text

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
SCHEMA = Path(__file__).resolve().parent / "data" / "sarif-schema-2.1.0.json"
UPDATE = os.environ.get("QDOCTOR_UPDATE_SNAPSHOTS") == "1"

SNAPSHOT_FILES = {
    OutputFormat.terminal: "sample.txt",
    OutputFormat.json: "sample.json",
    OutputFormat.markdown: "sample.md",
    OutputFormat.sarif: "sample.sarif",
    OutputFormat.html: "sample.html",
}


def render_sample(fmt: OutputFormat) -> str:
    docs, severities = sample_rule_docs()
    return render(sample_report(), fmt, width=110, color=False, root=ROOT, rule_docs=docs, rule_severities=severities)


def test_every_format_has_a_snapshot():
    assert set(SNAPSHOT_FILES) == set(OutputFormat)


@pytest.mark.parametrize("fmt", list(OutputFormat), ids=lambda f: f.value)
def test_snapshot(fmt: OutputFormat):
    path = SNAPSHOTS / SNAPSHOT_FILES[fmt]
    text = render_sample(fmt)
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    assert path.exists(), f"no snapshot {path.name}: run with QDOCTOR_UPDATE_SNAPSHOTS=1 and review it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{fmt.value} output changed; if intended: QDOCTOR_UPDATE_SNAPSHOTS=1 pytest {__file__}"


def test_renderers_are_pure():
    assert render_sample(OutputFormat.html) == render_sample(OutputFormat.html)
    report = sample_report()
    before = json.loads(render(report, OutputFormat.json))
    for fmt in OutputFormat:
        render(report, fmt, root=ROOT)
    assert json.loads(render(report, OutputFormat.json)) == before


# ---- SARIF ----------------------------------------------------------------------------------------------------


def validate_sarif(document: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_sample_sarif_is_valid_sarif_2_1_0():
    validate_sarif(json.loads(render_sample(OutputFormat.sarif)))


def test_schema_validation_catches_a_broken_log():
    """The validator really checks: a result with an unknown level is rejected."""
    jsonschema = pytest.importorskip("jsonschema")
    document = json.loads(render_sample(OutputFormat.sarif))
    document["runs"][0]["results"][0]["level"] = "fatal"
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft4Validator(schema).iter_errors(document))
    assert [(list(e.absolute_path), e.validator) for e in errors] == [(["runs", 0, "results", 0, "level"], "enum")]
    assert "'fatal' is not one of" in errors[0].message


def test_sarif_results_levels_locations():
    run = json.loads(render_sample(OutputFormat.sarif))["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["QD005", "QD003", "QD010"]
    assert [r["level"] for r in results] == ["error", "warning", "note"]
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    located = results[0]["locations"][0]
    physical = located["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "models/net.py", "uriBaseId": "%SRCROOT%"}
    assert physical["region"]["startLine"] == 14
    assert located["logicalLocations"][0]["fullyQualifiedName"] == "conv2"
    # %SRCROOT% is named, never spelled out as a path of the machine the log was made on
    assert "uri" not in run["originalUriBaseIds"]["%SRCROOT%"] and ROOT not in json.dumps(run)
    # no line of its own: the model file, no region; no module: no logical location
    whole_model = results[2]["locations"][0]
    assert whole_model["physicalLocation"]["artifactLocation"]["uri"] == "models/net.py"
    assert "region" not in whole_model["physicalLocation"] and "logicalLocations" not in whole_model
    assert "torch.backends.quantized.engine" in results[1]["message"]["text"]
    assert results[0]["properties"]["verified"]["after_ms"] == 1.932
    # skipped rules are notifications of the invocation
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert notes[0]["descriptor"]["id"] == "QD001"


def test_sarif_file_outside_root_is_a_file_uri():
    report = sample_report()
    report.findings[0].location = Location(module="conv2", file="/elsewhere/lib.py", line=3)
    docs, severities = sample_rule_docs()
    run = json.loads(render(report, OutputFormat.sarif, root=ROOT, rule_docs=docs, rule_severities=severities))["runs"][
        0
    ]
    assert run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "file:///elsewhere/lib.py"
    }


def test_sarif_rules_come_from_the_rule_documents():
    from qdoctor.diagnose.registry import all_rules
    from qdoctor.report.ruledocs import load_docs

    run = json.loads(render(sample_report(), OutputFormat.sarif, root=ROOT))["runs"][0]
    descriptors = {d["id"]: d for d in run["tool"]["driver"]["rules"]}
    docs = load_docs()
    for rule in all_rules():
        descriptor = descriptors[rule.code]
        assert descriptor["name"] == rule.name
        assert descriptor["help"]["markdown"] == docs[rule.code].text
        assert descriptor["shortDescription"]["text"] == docs[rule.code].summary
        assert (
            descriptor["defaultConfiguration"]["level"]
            == {"error": "error", "warning": "warning", "info": "note"}[rule.severity.value]
        )
    # findings of rules this build does not have (the sample's) still validate, without a ruleIndex
    validate_sarif(json.loads(render(sample_report(), OutputFormat.sarif, root=ROOT)))


def test_sarif_of_a_real_check_is_valid(check_fixture):
    report = check_fixture("prepared_not_converted.py")
    document = json.loads(render(report, OutputFormat.sarif, root=str(FIXTURES.parent)))
    validate_sarif(document)
    result = document["runs"][0]["results"][0]
    assert result["ruleId"] == "QD006" and result["level"] == "error"
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "fixtures/prepared_not_converted.py"


def test_sarif_has_no_infinity():
    """JSON has no Infinity: an identical-output SQNR (inf) in evidence is written as a string."""
    report = sample_report()
    report.findings[0].evidence["sqnr_db"] = float("inf")
    text = render(report, OutputFormat.sarif, root=ROOT)
    assert "Infinity" not in text
    json.loads(text)


# ---- Markdown -------------------------------------------------------------------------------------------------


def test_markdown_tables_and_code_survive_pipes_and_backticks():
    from qdoctor.report.render.markdown_report import cell, code_block, code_span

    assert cell("a | b\nc") == "a \\| b c"
    assert code_span("x`y") == "``x`y``"
    block = code_block('s = """```"""')
    assert block[0] == "````python" and block[-1] == "````"


def test_markdown_has_what_a_triager_needs():
    text = render_sample(OutputFormat.markdown)
    assert "| latency (median ± IQR) | 4.81 ms ± 0.23 (IQR, 42 runs) |" in text
    assert "avx512_vnni" in text and "qnnpack" in text and "OMP_NUM_THREADS=1" in text
    assert '```python\ntorch.backends.quantized.engine = "x86"\n```' in text
    assert "**verified: 4.81 ms -> 1.93 ms (2.49x, 2.38-2.61), SQNR vs float 31.4 dB -> 29.8 dB**" in text
    assert "`models/net.py:14`" in text and "/project" not in text


# ---- HTML -----------------------------------------------------------------------------------------------------


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster") and value:
                self.references.append(value)


def test_html_is_self_contained():
    text = render_sample(OutputFormat.html)
    parser = _Resources()
    parser.feed(text)
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    assert not parser.references, parser.references
    assert not re.search(r"url\(|@import|https?://", text.split("<body>")[0]), "the head loads something"
    assert "<svg" in text


def test_html_chart_has_a_bar_per_category_and_model():
    from qdoctor.report.render.html_report import breakdown_svg

    svg = breakdown_svg(sample_report())
    # subject: int8, q/dq, float, other; float baseline: float, other
    assert svg.count("<rect") == 6
    assert svg.count("subject (quantized_model)") == 1 and "float baseline" in svg


def test_html_escapes_user_text():
    report = sample_report()
    report.findings[0].message = "<script>alert(1)</script>"
    report.findings[0].fix = "x = '<b>'"
    text = render(report, OutputFormat.html, root=ROOT)
    assert "<script>" not in text and "&lt;script&gt;" in text and "x = &#x27;&lt;b&gt;&#x27;" in text


def test_html_of_a_real_check(check_fixture):
    text = render(check_fixture("prepared_not_converted.py"), OutputFormat.html)
    assert "QD006" in text and "observers/fake-quant" in text and "<svg" in text


# ---- shared pieces --------------------------------------------------------------------------------------------


def test_module_rows_join_profile_and_trace():
    rows = {r.path: r for r in module_rows(sample_report().facts)}
    assert rows["conv1"].ran_on == "int8" and rows["conv2"].ran_on == "float"
    assert rows["quant"].ran_on == "float -> int8" and rows["dequant"].ran_on == "int8 -> float"
    assert rows["conv2"].time_ms == 1.95
    assert list(rows)[0] == "conv2"  # slowest first


def test_verified_text():
    from qdoctor.facts import Ratio
    from qdoctor.facts.prescription import Applicability, Verified

    assert verified_text(None) is None
    assert verified_text(Verified.cannot_apply("engine is global")) == "not verified: engine is global"
    crashed = Verified(Applicability.VERIFIED, before_ms=None, after_ms=2.0)
    assert verified_text(crashed) == "verified: crashed -> 2.00 ms"
    measured = Verified(
        Applicability.VERIFIED,
        before_ms=4.0,
        after_ms=2.0,
        speedup=Ratio(value=2.0, low=1.9, high=2.1, method="paired-bootstrap"),
        effect="faster",
        after_sqnr_db=float("inf"),
    )
    line = verified_text(measured)
    assert line == "verified: 4.00 ms -> 2.00 ms (2.00x, 1.90-2.10), SQNR vs float identical"


def test_paths_are_relative_to_root_only_below_it():
    from qdoctor.report.render.common import display_path

    assert display_path(MODEL_FILE, ROOT) == "models/net.py"
    assert display_path("/elsewhere/x.py", ROOT) == "/elsewhere/x.py"
    assert display_path(MODEL_FILE, None) == MODEL_FILE


def test_rules_that_cannot_apply_are_left_out_of_readable_reports_and_kept_in_json():
    report = sample_report()
    assert [s.rule for s in report.skipped] == ["QD001", "QD012"]
    assert [s.rule for s in report.skipped_here()] == ["QD001"]
    for fmt in (OutputFormat.terminal, OutputFormat.markdown, OutputFormat.html):
        text = render_sample(fmt)
        assert "QD001 uncalibrated-observers" in text and "pt2e-not-lowered" not in text, fmt
    document = json.loads(render_sample(OutputFormat.json))
    assert [(s["rule"], s["applicable"]) for s in document["skipped"]] == [("QD001", True), ("QD012", False)]
