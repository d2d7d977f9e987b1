"""QD020 error-hotspot: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import healthy_facts, layer, mod, numerics_facts, outlier_row, run_rule

from qdoctor import facts as F
from qdoctor.facts import SQNR_FLOOR_DB

FIXTURES = ["fixtures/error_hotspot_layer.py", "fixtures/calibration_corrupted_row.py"]
HEALTHY = ["fixtures/healthy_static.py"]
# random weights (weights=None, a fresh class): the SQNR is a random draw's, so QD020 is not judged (tests/test_weights.py)
UNTRAINED = [
    "fixtures/untrained_mobilenet_v2_ptq.py",
    "fixtures/untrained_yolo_silu_cnn.py",
    "fixtures/untrained_resnet18_dynamic.py",
]


def _stub() -> F.LayerNumerics:
    return layer("quant", 36.0, type_="Quantize", kind=F.QUANT_STUB, weight_qscheme=None)


def test_qd020_quiet_above_the_floor():
    assert run_rule("QD020", healthy_facts()) == []
    layers = [_stub(), layer("conv1", 34.0), layer("conv2", 12.0), layer("fc", 36.0)]
    assert run_rule("QD020", numerics_facts(SQNR_FLOOR_DB + 0.5, layers)) == []


def test_qd020_names_the_layer_far_below_the_rest():
    layers = [_stub(), layer("conv1", 34.0), layer("conv2", 12.5), layer("conv3", 37.0), layer("fc", 36.0)]
    (finding,) = run_rule("QD020", numerics_facts(15.2, layers))
    assert finding.location.module == "conv2" and finding.location.line is not None
    assert finding.evidence["hotspots"] == ["conv2"]
    assert finding.evidence["worst_first"][0] == "conv2"
    assert finding.evidence["floor_db"] == SQNR_FLOOR_DB
    assert "`conv2`" in finding.message and "15.2 dB" in finding.message
    assert 'for name in ["conv2"]' in finding.fix and "DeQuantStub" in finding.fix
    assert finding.severity.value == "warning"


def test_qd020_below_the_floor_always_fires_even_when_no_layer_stands_out():
    layers = [_stub(), layer("conv1", 17.0), layer("conv2", 16.0), layer("fc", 18.0)]
    (finding,) = run_rule("QD020", numerics_facts(14.0, layers))
    assert finding.evidence["hotspots"] == []
    assert "No single layer stands out" in finding.message
    (bare,) = run_rule("QD020", numerics_facts(3.0, []))  # no per-layer numbers at all (PT2E)
    assert bare.severity.value == "error"  # below 10 dB the output is mostly noise


@pytest.mark.parametrize("kind", ["hub-model", "pretrained-weights", "checkpoint", "dataset"])
def test_qd020_and_qd022_leave_stand_in_weights_and_data_unjudged(kind):
    layers = [
        layer("quant", 0.0, type_="Quantize", kind=F.QUANT_STUB, levels_used=0.1),
        layer("conv1", 34.0),
        layer("conv2", 12.5),
    ]
    facts = numerics_facts(15.2, layers)
    assert run_rule("QD020", facts) and run_rule("QD022", facts)  # the user's own weights and data: judged
    facts.target.substitutions = [F.Substitution(kind=kind, requested="what the script asked", instead="random")]
    assert run_rule("QD020", facts) == [] and run_rule("QD022", facts) == []
    facts.target.substitutions = [F.Substitution(kind="cuda", requested=".cuda()", instead="CPU")]
    assert run_rule("QD020", facts)  # a CPU stand-in for CUDA changes no number of the model


def test_qd020_points_at_qd022_when_a_range_explains_it():
    layers = [
        layer("quant", 0.0, type_="Quantize", kind=F.QUANT_STUB, levels_used=0.1, outlier_rows=[outlier_row(3, 17)]),
        layer("fc1", 0.0, levels_used=0.0),
        layer("fc2", 0.0, levels_used=0.0),
    ]
    (finding,) = run_rule("QD020", numerics_facts(0.0, layers))
    assert finding.evidence["cause"] == "calibration-range"
    assert "QD022" in finding.message


def test_qd020_leads_with_the_accuracy_drop_when_evaluate_is_defined():
    layers = [layer("conv1", 34.0), layer("conv2", 33.0)]
    (finding,) = run_rule("QD020", numerics_facts(24.0, layers, metric_subject=0.71, metric_float=0.76))
    assert finding.message.startswith("evaluate() drops 5.0 points")
    assert finding.evidence["accuracy_drop_points"] == pytest.approx(5.0)
    assert run_rule("QD020", numerics_facts(24.0, layers, metric_subject=0.755, metric_float=0.76)) == []


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd020(check_fixture, fixture):
    assert "QD020" in codes(check_fixture(fixture))


@pytest.mark.parametrize("fixture", UNTRAINED)
def test_untrained_fixtures_get_no_qd020(check_fixture, fixture):
    report = check_fixture(fixture)
    assert "QD020" not in codes(report) and report.facts.weights.untrained


def test_hotspot_fixture_names_fc2(check_fixture):
    (finding,) = findings_of(check_fixture("fixtures/error_hotspot_layer.py"), "QD020")
    assert finding.location.module == "fc2"
    assert finding.evidence["hotspots"] == ["fc2"]


@pytest.mark.parametrize("fixture", HEALTHY)
def test_healthy_cnn_gets_none_of_qd020_to_qd022(check_fixture, fixture):
    report = check_fixture(fixture)
    assert not {"QD020", "QD021", "QD022"} & set(codes(report))
    layers = report.facts.numerics.layers
    assert [x.path for x in layers] == ["quant", "conv1", "conv2", "fc"]
    assert all(x.isolated_sqnr_db > 25 for x in layers)
    assert report.facts.numerics.sqnr_db > 25


def test_qd020_leaves_uncalibrated_and_unconverted_models_to_qd001_and_qd006():
    layers = [layer("conv1", 3.0, output_scale=1.0, levels_used=2.0), layer("conv2", 2.0)]
    facts = numerics_facts(2.0, layers)
    facts.modules = [m for m in facts.modules or [] if m.path != "conv"] + [
        mod("conv", "ConvReLU2d", F.QUANTIZED, scale=1.0, zero_point=0)
    ]
    assert run_rule("QD020", facts) == []
    assert run_rule("QD001", facts)  # the finding a model below the floor still gets
    assert run_rule("QD022", facts) == []  # the default step is no recorded range
    observed = numerics_facts(2.0, [layer("conv2", 2.0)])
    observed.modules = [*(observed.modules or []), mod("conv.activation_post_process", "HistogramObserver", F.OBSERVER)]
    assert run_rule("QD020", observed) == []
