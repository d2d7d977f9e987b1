"""QD022 calibration-range-outliers: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import healthy_facts, layer, numerics_facts, outlier_row, run_rule

from qdoctor import facts as F

FIXTURES = ["fixtures/calibration_corrupted_row.py"]
QUIET = ["fixtures/small_output_regressor.py"]  # one value per row: no level count, no harm, no finding


def test_qd022_quiet_on_healthy_ranges():
    assert run_rule("QD022", healthy_facts()) == []
    assert run_rule("QD022", numerics_facts(30.0, [layer("conv1", 33.0), layer("fc", 35.0, levels_used=60.0)])) == []


def test_qd022_names_the_first_layer_and_the_rows():
    layers = [
        layer("quant", 0.0, type_="Quantize", kind=F.QUANT_STUB, levels_used=0.1, outlier_rows=[outlier_row(3, 17)]),
        layer("fc1", 0.0, levels_used=0.0, outlier_rows=[outlier_row(3, 17, 13000.0, 1.5)]),
    ]
    (finding,) = run_rule("QD022", numerics_facts(0.0, layers))
    assert finding.location.module == "quant"
    assert finding.evidence["outlier_rows"] == [[3, 17]]
    assert "batch 3 row 17" in finding.message
    assert "bad_rows = {(3, 17)}" in finding.fix


def test_qd022_without_calibration_data_suggests_percentile_clipping():
    facts = numerics_facts(5.0, [layer("fc1", 5.0, levels_used=3.0)])
    (finding,) = run_rule("QD022", facts)
    assert finding.evidence["outlier_rows"] == []
    assert "calibration_data()" in finding.message and "HistogramObserver" in finding.fix


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd022(check_fixture, fixture):
    assert "QD022" in codes(check_fixture(fixture))


@pytest.mark.parametrize("fixture", QUIET)
def test_small_output_fixture_gets_no_qd022(check_fixture, fixture):
    assert "QD022" not in codes(check_fixture(fixture))


def test_corrupted_row_fixture_names_the_row(check_fixture):
    (finding,) = findings_of(check_fixture("fixtures/calibration_corrupted_row.py"), "QD022")
    assert finding.location.module == "quant"
    assert finding.evidence["outlier_rows"] == [[3, 17]]
