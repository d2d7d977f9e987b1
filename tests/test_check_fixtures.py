"""End to end over shipped fixtures: rule codes and module paths, never timings."""

from conftest import SCRIPTS, codes, run_check


def test_seed004_as_written_reports_missing_stub_at_first_conv(check_fixture):
    report = check_fixture("seed004_as_written.py")
    qd002 = [f for f in report.findings if f.rule == "QD002"]
    assert qd002 and qd002[0].location.module == "0"
    assert qd002[0].location.line == 10
    assert report.facts.crash is not None and report.facts.crash.module == "0"


def test_healthy_static_model_has_no_findings(check_fixture):
    report = check_fixture("healthy_static.py")
    assert report.findings == []
    assert report.exit_code() == 0


def test_prepared_not_converted_reports_qd006(check_fixture):
    report = check_fixture("prepared_not_converted.py")
    qd006 = [f for f in report.findings if f.rule == "QD006"]
    assert len(qd006) == 1
    assert qd006[0].location.module == "1"  # the first conv, not the QuantStub's observer
    assert qd006[0].evidence["observers"] == 4
    assert report.exit_code() == 1


def test_float_model_is_not_quantized_and_has_no_findings():
    report = run_check(SCRIPTS / "float_only.py")
    assert report.findings == []
    assert any("not quantized" in n and "qdoctor compare" in n for n in report.notes)


def test_select_and_ignore():
    report = run_check(SCRIPTS.parent.parent / "fixtures" / "prepared_not_converted.py", ignore=["QD006"])
    assert "QD006" not in codes(report)
    report = run_check(SCRIPTS.parent.parent / "fixtures" / "prepared_not_converted.py", select=["QD002"])
    assert codes(report) == []
