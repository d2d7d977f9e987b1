"""QD025 not-delegated-op: unit tests on hand-built deployment facts, then end to end over its fixture with
`--deploy executorch-xnnpack` (skipped without executorch)."""

from __future__ import annotations

import dataclasses

from conftest import as_json, codes
from deployed import deployed_report, grid_sample_deployment, ms, need_executorch
from factsbuild import make_facts, run_rule

FIXTURES = ["fixtures/executorch/grid_sample_not_delegated.py"]


def test_qd025_names_the_op_its_count_and_its_line():
    (finding,) = run_rule("QD025", make_facts(deploy=grid_sample_deployment()))
    assert "`aten_grid_sampler_2d_default` (1 node)" in finding.message
    assert finding.location.line == 33 and "grid_sample" in finding.location.code
    assert "2 delegated partitions" in finding.message
    assert finding.evidence["int8_program_ms"] == 1.23 and finding.evidence["float_program_ms"] == 1.33
    assert "not measure" in finding.message and finding.evidence["op_ms"] is None
    assert "F.interpolate" in finding.fix  # grid_sample's supported equivalent


def test_qd025_gives_the_measured_cost_of_the_op_when_there_is_one():
    deploy = grid_sample_deployment()
    deploy.op_cost["aten_grid_sampler_2d_default"] = ms(0.4)
    (finding,) = run_rule("QD025", make_facts(deploy=deploy))
    assert "about 0.400 ms per call" in finding.message and finding.evidence["op_ms"] == 0.4


def test_qd025_ignores_glue_constants_and_delegated_ops():
    deploy = grid_sample_deployment()
    int8 = deploy.programs[0]
    int8.ops = [op for op in int8.ops if op.op != "aten_grid_sampler_2d_default"]
    assert run_rule("QD025", make_facts(deploy=deploy)) == []


def test_qd025_reads_only_the_int8_program():
    deploy = grid_sample_deployment()
    deploy.programs = [p for p in deploy.programs if p.role != "int8"]
    assert run_rule("QD025", make_facts(deploy=deploy)) == []


def test_qd025_without_timing_says_so_without_numbers():
    (finding,) = run_rule("QD025", make_facts(deploy=grid_sample_deployment(timed=False)))
    assert "int8_program_ms" not in finding.evidence and " ms vs " not in finding.message


def test_qd025_another_op_gets_the_generic_equivalent():
    deploy = grid_sample_deployment()
    deploy.programs[0].ops[1] = dataclasses.replace(deploy.programs[0].ops[1], op="aten_roll_default")
    (finding,) = run_rule("QD025", make_facts(deploy=deploy))
    assert "an op XNNPACK delegates" in finding.fix


# ------------------------------------------------------------------------------------------------ end to end


def test_grid_sample_fixture_reports_qd025_at_its_line():
    need_executorch()
    report = deployed_report(FIXTURES[0])
    assert "QD025" in codes(report)
    (finding,) = [f for f in report.findings if f.rule == "QD025"]
    assert finding.evidence["op"] == "aten_grid_sampler_2d_default"
    assert finding.location.line == 33 and "grid_sample" in (finding.location.code or "")
    assert finding.evidence["partitions"] == 2
    # the deployment replaces Inductor's advice: no QD012 (not lowered) nor QD018 (XNNPACK quantizer on x86)
    assert not {"QD012", "QD018"} & set(codes(report))


def test_grid_sample_fixture_json_has_delegation_counts_and_runtime_latencies():
    need_executorch()
    document = as_json(deployed_report(FIXTURES[0]))["deploy"]
    assert document["target"] == "executorch-xnnpack" and document["quantizer_made_for"] is None
    int8, float_ = document["programs"]
    assert (int8["role"], float_["role"]) == ("int8", "float")
    assert int8["partitions"] == 2 and int8["program_bytes"] > 0 and float_["program_bytes"] > 0
    rows = {op["op"]: op for op in int8["ops"]}
    assert rows["aten_grid_sampler_2d_default"]["not_delegated"] == 1
    assert rows["aten_grid_sampler_2d_default"]["sources"][0]["line"] == 33
    assert rows["aten_convolution_default"]["delegated"] >= 7 and rows["aten_convolution_default"]["not_delegated"] == 0
    assert int8["latency"]["median_ms"] > 0 and float_["latency"]["median_ms"] > 0
    assert document["speedup_interval"] is not None


def test_grid_sample_fixture_times_the_portable_op_alone():
    need_executorch()
    report = deployed_report(FIXTURES[0])
    (finding,) = [f for f in report.findings if f.rule == "QD025"]
    assert report.facts.deploy.op_cost["aten_grid_sampler_2d_default"].median_ms > 0
    assert finding.evidence["op_ms"] is not None and "timed alone" in finding.message
