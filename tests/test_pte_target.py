"""`qdoctor check program.pte`: an ExecuTorch program read as it is (its delegate calls, the kernels outside them),
timed in the runtime, and judged by QD025 and QD012 without a script, a float baseline or source lines. The programs
are built at test time from tiny models with random weights (tests/deployed.py: build_pte); skipped without
executorch, except what needs none of it."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest
from conftest import as_json, codes
from deployed import build_pte, need_executorch
from typer.testing import CliRunner

from qdoctor import flows
from qdoctor.cli import app
from qdoctor.errors import TargetError
from qdoctor.flows._pte import op_name

runner = CliRunner()


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> Path:
    need_executorch()
    return tmp_path_factory.mktemp("pte")


@functools.cache
def _report(path: str):
    from qdoctor.gather import GatherOptions
    from qdoctor.run.check import CheckOptions, check

    return check(path, CheckOptions(gather=GatherOptions(bench=True, bench_time=0.05), verify=False))


def report_of(name: str, folder: Path):
    path = folder / f"{name}.pte"
    if not path.exists():
        build_pte(name, folder)
    return _report(str(path))


def test_kernel_names_map_to_the_edge_op_names_the_facts_use():
    need_executorch()
    assert op_name("aten::grid_sampler_2d", "out") == "aten_grid_sampler_2d_default"
    assert op_name("aten::add", "out") == "aten_add_Tensor"  # the functional op whose out variant it is
    assert op_name("aten::mean", "out") == "aten_mean_dim"
    assert op_name("aten::max", "dim_max") == "aten_max_dim"
    assert op_name("quantized_decomposed::quantize_per_tensor", "out") == (
        "quantized_decomposed_quantize_per_tensor_default"
    )
    assert op_name("no_such_library::op", "Tensor_out") == "no_such_library_op_Tensor"  # unknown here: its stem


def test_a_pte_is_a_program_target_of_the_executorch_flow():
    assert flows.program_flow("model.PTE") is flows.deploy_flow("executorch-xnnpack")
    assert flows.program_flow("model.py") is None and flows.program_flow("model") is None


def test_without_executorch_a_pte_is_one_line(monkeypatch, tmp_path):
    from qdoctor.load.program import load_program

    path = tmp_path / "model.pte"
    path.write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "executorch.runtime", None)  # import executorch.runtime raises ImportError
    with pytest.raises(TargetError) as raised:
        load_program(str(path))
    message = str(raised.value)
    assert "not installed" in message and "qdoctor[executorch]" in message and "\n" not in message


def test_a_pte_for_another_deploy_target_is_refused(tmp_path):
    from qdoctor.load.program import load_program

    with pytest.raises(TargetError, match="--deploy tflite cannot read it"):
        load_program(str(tmp_path / "model.pte"), deploy="tflite")


@pytest.mark.parametrize("content", [b"", b"hello, not a program", b"ET12" * 40])
def test_a_corrupt_pte_exits_2_with_one_line(tmp_path, content):
    need_executorch()
    path = tmp_path / "broken.pte"
    path.write_bytes(content)
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("qdoctor:")]
    assert len(lines) == 1 and "ExecuTorch program" in lines[0], result.output
    assert "Traceback" not in result.output


def test_a_truncated_pte_exits_2_with_one_line(programs, tmp_path):
    path = tmp_path / "truncated.pte"
    path.write_bytes(build_pte("grid_sample", programs).read_bytes()[:3000])
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "truncated" in result.output


def test_a_fully_delegated_pte_is_healthy_and_timed(programs):
    report = report_of("delegated", programs)
    assert not [f for f in report.findings if f.severity.value in ("warning", "error")], codes(report)
    deploy = report.facts.deploy
    assert deploy.from_pte and deploy.target == "executorch-xnnpack" and deploy.speedup is None
    (program,) = deploy.programs
    assert program.partitions == 1 and program.partitions_by_backend == {"XnnpackBackend": 1}
    assert program.program_bytes == (programs / "delegated.pte").stat().st_size and not program.left_out()
    assert program.latency is not None and program.latency.median_ms > 0
    assert {"float", "source_lines", "partition_edges"} <= set(deploy.unavailable)
    assert report.facts.target.inputs[0].shape == [1, 3, 16, 16]


def test_speedup_rules_do_not_apply_to_a_pte(programs):
    report = report_of("delegated", programs)
    skipped = {s.rule: s for s in report.skipped}
    assert "QD024" in skipped and not skipped["QD024"].applicable
    assert "no float baseline" in skipped["QD024"].reason
    assert not [s for s in report.skipped if s.applicable]  # every rule it cannot run does not apply, none failed


def test_a_pte_with_an_op_left_to_portable_kernels_gets_qd025_without_a_line(programs):
    report = report_of("grid_sample", programs)
    assert codes(report) == ["QD025"]  # no QD026: partition edges are not read from a .pte
    (finding,) = report.findings
    assert finding.evidence["op"] == "aten_grid_sampler_2d_default" and finding.evidence["partitions"] == 2
    assert finding.evidence["from_pte"] and finding.location.line is None
    assert "no stack traces" in finding.message
    # rebuilt alone from the arguments the program records, and timed in the runtime: its cost
    assert report.facts.deploy.op_cost["aten_grid_sampler_2d_default"].median_ms > 0
    assert finding.evidence["op_ms"] is not None and "timed alone" in finding.message
    document = as_json(report)["deploy"]
    (program,) = document["programs"]
    assert program["partitions_by_backend"] == {"XnnpackBackend": 2}
    assert {op["op"]: op["not_delegated"] for op in program["ops"]} == {"aten_grid_sampler_2d_default": 1}
    assert "partition edges are not read" in document["unavailable"]["partition_edges"]


def test_a_quantized_pte_with_no_delegate_is_quantized_but_not_lowered(programs):
    report = report_of("not_lowered", programs)
    assert codes(report) == ["QD012"]  # one finding for the missing lowering, not one per op (QD025)
    (finding,) = report.findings
    assert "no XNNPACK delegate" in finding.message and finding.evidence["partitions"] == 0
    (program,) = report.facts.deploy.programs
    assert program.role == "int8" and program.quantized_ops > 0
    assert {"aten_convolution_default", "quantized_decomposed_quantize_per_tensor_default"} <= {
        op.op for op in program.left_out()
    }


def test_a_float_pte_with_no_delegate_gets_no_invented_finding(programs):
    report = report_of("float_not_lowered", programs)
    assert report.findings == []
    (program,) = report.facts.deploy.programs
    assert program.role == "unknown" and program.partitions == 0 and program.latency is not None


def test_check_program_pte_from_the_command_line(programs):
    path = build_pte("grid_sample", programs) if not (programs / "grid_sample.pte").exists() else None
    path = path or programs / "grid_sample.pte"
    result = runner.invoke(app, ["check", str(path), "--deploy", "executorch-xnnpack", "--no-bench"])
    assert result.exit_code == 1, result.output  # a warning: QD025
    assert "QD025" in result.output and "timing disabled" in result.output


def test_every_format_renders_a_pte_report(programs):
    from qdoctor.report.render import OutputFormat, render

    report = report_of("grid_sample", programs)
    for fmt in OutputFormat:
        text = render(report, fmt)
        assert "QD025" in text and "grid_sampler_2d" in text, fmt
        assert "Traceback" not in text and "no float baseline found" not in text, fmt


def test_the_batch_summary_gives_the_programs_latency(programs):
    from qdoctor.run.batch import CHECKED, Outcome
    from qdoctor.run.summary import render_table

    report = report_of("delegated", programs)
    table = render_table([Outcome("delegated.pte", CHECKED, report), Outcome("other.pte", CHECKED, report)])
    latency = report.facts.deploy.programs[0].latency.median_ms
    assert f"{latency:.2f} ms" in table
