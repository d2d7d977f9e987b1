"""--trace-dir: the profiler traces of subject and float baseline, in the layout torch-tb-profiler reads."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES
from typer.testing import CliRunner

from qdoctor.cli import app
from qdoctor.gather.profile import TRACE_WORKER, trace_file


def _check_with_traces(trace_dir):
    from qdoctor.gather import GatherOptions
    from qdoctor.run.check import CheckOptions, check

    options = CheckOptions(gather=GatherOptions(bench=False, profile_budget=0.05, trace_dir=str(trace_dir)))
    return check(str(FIXTURES / "healthy_static.py"), options)


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    trace_dir = tmp_path_factory.mktemp("traces")
    return trace_dir, _check_with_traces(trace_dir)


def test_trace_file_layout():
    assert trace_file("/t", "fixtures/net.py", "subject").as_posix() == f"/t/net-subject/{TRACE_WORKER}.pt.trace.json"
    assert (
        trace_file("/t", "models.zoo:build", "float").as_posix()
        == f"/t/models.zoo-build-float/{TRACE_WORKER}.pt.trace.json"
    )
    assert trace_file("/t", "my model!.py", "subject").parent.name == "my_model-subject"


def test_one_run_folder_per_model_with_a_chrome_trace(traced):
    trace_dir, report = traced
    assert sorted(p.name for p in trace_dir.iterdir()) == ["healthy_static-float", "healthy_static-subject"]
    assert set(report.facts.trace_files) == {"subject", "float"}
    subject = json.loads((trace_dir / "healthy_static-subject" / f"{TRACE_WORKER}.pt.trace.json").read_text())
    names = {e.get("name", "") for e in subject["traceEvents"]}
    assert any(n.startswith("quantized::") for n in names), "the subject's trace has its int8 kernels"
    assert "qdoctor.module::conv1" in names, "module scopes are in the trace"
    baseline = json.loads((trace_dir / "healthy_static-float" / f"{TRACE_WORKER}.pt.trace.json").read_text())
    assert not any(e.get("name", "").startswith("quantized::") for e in baseline["traceEvents"])
    # nothing half-written is left behind
    assert not [p for p in trace_dir.rglob("*") if p.name.endswith(".tmp")]
    # the profile itself is unchanged by exporting it
    assert report.facts.profile is not None and report.facts.profile.total_ms > 0


def test_torch_tb_profiler_run_loader_parses_them(traced):
    """The TensorBoard plugin's own loader (what `tensorboard --logdir DIR` runs) reads both runs."""
    pytest.importorskip("torch_tb_profiler")
    from torch_tb_profiler import io
    from torch_tb_profiler.profiler.loader import RunLoader

    trace_dir, _ = traced
    cache = io.Cache()
    operators = {}
    for role in ("subject", "float"):
        run_name = f"healthy_static-{role}"
        run = RunLoader(run_name, str(trace_dir / run_name), cache).load()
        # the loader drops (and only logs) a worker whose trace it cannot parse
        profiles = run.get_profiles(worker=TRACE_WORKER)
        assert len(profiles) == 1, run_name
        profile = profiles[0]
        assert {v.name for v in profile.views} >= {"overall", "operator", "trace"}
        operators[role] = {row["name"] for row in profile.operation_table_by_name["data"]}
    assert "quantized::conv2d_relu" in operators["subject"]
    assert "aten::conv2d" in operators["float"] and not any(n.startswith("quantized::") for n in operators["float"])


def test_an_unwritable_trace_dir_keeps_the_profile(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    report = _check_with_traces(blocker)
    assert report.facts.profile is not None and report.facts.trace_files == {}
    assert "trace_subject" in report.facts.unavailable and "trace_float" in report.facts.unavailable


def test_cli_trace_dir_needs_the_profiler(tmp_path):
    result = CliRunner().invoke(
        app, ["check", str(FIXTURES / "healthy_static.py"), "--no-profile", "--trace-dir", str(tmp_path / "t")]
    )
    assert result.exit_code == 2 and "--no-profile" in result.output and "Traceback" not in result.output
