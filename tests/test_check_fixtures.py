"""End to end, across rules: a healthy model and a float one get no finding, --select/--ignore choose rules.

Each rule's own fixtures are checked in tests/rules/test_qdNNN.py.
"""

from conftest import SCRIPTS, codes, run_check


def test_healthy_static_model_has_no_findings(check_fixture):
    report = check_fixture("healthy_static.py")
    assert report.findings == []
    assert report.exit_code() == 0


def test_float_model_is_not_quantized_and_has_no_findings():
    report = run_check(SCRIPTS / "float_only.py", profile=False)
    assert report.findings == []
    assert any("not quantized" in n and "qdoctor compare" in n for n in report.notes)


def test_select_and_ignore():
    report = run_check(SCRIPTS.parent.parent / "fixtures" / "prepared_not_converted.py", ignore=["QD006"])
    assert "QD006" not in codes(report)
    report = run_check(SCRIPTS.parent.parent / "fixtures" / "prepared_not_converted.py", select=["QD002"])
    assert codes(report) == []
