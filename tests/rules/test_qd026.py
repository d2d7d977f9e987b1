"""QD026 partition-boundaries: unit tests on hand-built deployment facts, then end to end over its fixture with
`--deploy executorch-xnnpack` (skipped without executorch)."""

from __future__ import annotations

from conftest import codes
from deployed import deployed_report, grid_sample_deployment, need_executorch
from factsbuild import make_facts, run_rule

from qdoctor.facts.measurement import Ratio

FIXTURES = ["fixtures/executorch/grid_sample_not_delegated.py"]


def test_qd026_counts_the_tensors_converted_at_partition_edges():
    deploy = grid_sample_deployment()
    deploy.speedup = Ratio(1.08, 0.9, 1.3)
    (finding,) = run_rule("QD026", make_facts(deploy=deploy))
    assert "2 XNNPACK partitions" in finding.message and "`aten_grid_sampler_2d_default`" in finding.message
    assert finding.evidence["converted_edges"] == 2 and finding.evidence["converted_elements_per_call"] == 65536
    assert finding.evidence["int8_speedup_over_float"] == 1.08
    assert "not measured" in finding.message


def test_qd026_is_silent_on_one_partition():
    assert run_rule("QD026", make_facts(deploy=grid_sample_deployment(partitions=1))) == []


def test_qd026_is_silent_without_edges():
    deploy = grid_sample_deployment()
    deploy.programs[0].edges = []
    assert run_rule("QD026", make_facts(deploy=deploy)) == []


def test_grid_sample_fixture_reports_qd026():
    need_executorch()
    report = deployed_report(FIXTURES[0])
    assert "QD026" in codes(report)
    (finding,) = [f for f in report.findings if f.rule == "QD026"]
    assert finding.evidence["partitions"] == 2 and finding.evidence["converted_edges"] == 2


def test_the_report_notes_say_sizes_partitions_and_latencies():
    from qdoctor.report.deploy import deploy_notes

    deploy = grid_sample_deployment()
    deploy.speedup = Ratio(1.08, 0.9, 1.3)
    notes = deploy_notes(make_facts(deploy=deploy))
    assert "int8 .pte 32.2 kB, 2 delegated partitions" in notes[0]
    assert "aten_grid_sampler_2d_default x1 at line 33" in notes[0] and "1.230 ms" in notes[0]
    assert "getitem" not in notes[0] and "1.08x the speed of float" in notes[1]
