"""QD021 per-tensor-weight-outliers: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import healthy_facts, layer, numerics_facts, run_rule

FIXTURES = ["fixtures/per_tensor_outlier_channel.py"]
PER_TENSOR = "torch.per_tensor_affine"


def test_qd021_quiet_on_healthy_and_on_per_channel_weights():
    assert run_rule("QD021", healthy_facts()) == []
    spread = layer("conv2", 30.0, weight_channel_range_ratio=99.0, weight_sqnr_db=37.0)  # per-channel already
    assert run_rule("QD021", numerics_facts(30.0, [layer("conv1", 33.0), spread])) == []


def test_qd021_quiet_when_per_tensor_channels_are_alike():
    even = layer("conv1", 33.0, weight_qscheme=PER_TENSOR, weight_channel_range_ratio=1.3, weight_sqnr_db=45.0)
    assert run_rule("QD021", numerics_facts(30.0, [even])) == []


def test_qd021_names_the_layer_and_the_per_channel_gain():
    outlier = layer(
        "conv2",
        8.6,
        weight_qscheme=PER_TENSOR,
        weight_channel_range_ratio=98.6,
        weight_sqnr_db=22.6,
        weight_sqnr_per_channel_db=37.7,
    )
    (finding,) = run_rule("QD021", numerics_facts(21.0, [layer("conv1", 33.0, weight_qscheme=PER_TENSOR), outlier]))
    assert finding.location.module == "conv2"
    assert finding.evidence["channel_range_ratio"] == 98.6
    assert "22.6 dB" in finding.message and "37.7 dB" in finding.message
    assert 'get_default_qconfig("x86")' in finding.fix


def test_qd021_quiet_when_per_channel_would_not_help():
    flat = layer(
        "conv2",
        30.0,
        weight_qscheme=PER_TENSOR,
        weight_channel_range_ratio=9.0,
        weight_sqnr_db=40.0,
        weight_sqnr_per_channel_db=42.0,
    )
    assert run_rule("QD021", numerics_facts(30.0, [flat])) == []


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd021(check_fixture, fixture):
    assert "QD021" in codes(check_fixture(fixture))


def test_outlier_channel_fixture_names_conv2(check_fixture):
    (finding,) = findings_of(check_fixture("fixtures/per_tensor_outlier_channel.py"), "QD021")
    assert finding.location.module == "conv2"
