"""QD010 thread-config: unit tests on hand-built Facts, then end to end over its fixture."""

from __future__ import annotations

import os

import pytest
from conftest import codes, findings_of, fixture_path, run_check
from factsbuild import env, healthy_facts, make_facts, mod, run_rule

from qdoctor import facts as F

FIXTURES = ["fixtures/threads_set_to_one.py", "fixtures/standin_datasets.py"]


def threads_facts(script="", **environment):
    """A converted conv on a 4-core machine that torch uses fully unless ``environment`` says otherwise."""
    machine = dict(cpu_count=4, num_threads=4, num_interop_threads=4) | environment
    return make_facts([mod("conv", "Conv2d", F.QUANTIZED)], [], script=script, environment=env(**machine))


def test_qd010_quiet_on_a_healthy_converted_model():
    assert run_rule("QD010", healthy_facts()) == []


def test_qd010_set_num_threads_one_on_four_cores():
    script = "import torch\n\ntorch.set_num_threads(1)  # stable numbers\n"
    [finding] = run_rule("QD010", threads_facts(script, num_threads=1, cpu_count=4))
    assert finding.location.line == 3 and "1 intra-op thread" in finding.message
    assert "torch.set_num_threads(4)" in finding.fix and finding.evidence["recommended_threads"] == 4


def test_qd010_points_at_the_set_num_threads_in_force_the_last_one():
    script = "import torch\n\ntorch.set_num_threads(1)\nmodel = build()\ntorch.set_num_threads(2)  # for serving\n"
    [finding] = run_rule("QD010", threads_facts(script, num_threads=2, cpu_count=4))
    assert finding.location.line == 5 and "2 intra-op threads" in finding.message
    assert finding.evidence["set_by"] == ["`torch.set_num_threads(2)  # for serving` (line 5)"]


def test_qd010_more_threads_than_cores_from_the_environment():
    [finding] = run_rule("QD010", threads_facts(num_threads=16, cpu_count=4, thread_env={"OMP_NUM_THREADS": "16"}))
    assert "oversubscribe" in finding.message and "OMP_NUM_THREADS=16" in finding.message
    assert finding.location.line is None


def test_qd010_env_var_set_in_the_script_counts_even_if_torch_started_first():
    script = 'import os\nos.environ["OMP_NUM_THREADS"] = "1"\nimport torch\n'
    [finding] = run_rule("QD010", threads_facts(script, num_threads=4, cpu_count=4))
    assert finding.location.line == 2


def test_qd010_quiet_on_defaults():
    assert run_rule("QD010", threads_facts(num_threads=4, cpu_count=4)) == []
    # torch's default is the physical core count, below the logical CPUs on SMT machines: not a finding
    assert run_rule("QD010", threads_facts(num_threads=4, cpu_count=8)) == []


def test_qd010_interop_threads_beyond_cores_is_info():
    [finding] = run_rule("QD010", threads_facts(num_interop_threads=32, cpu_count=4))
    assert finding.severity.value == "info"


# ------------------------------------------------------------------------------------------------ end to end

needs_two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a machine with 2 or more cores")


@pytest.fixture(scope="module")
def threads_checked():
    """FIXTURES[0] checked once (no profile: the rule reads settings, not times), with torch's thread count
    before and after."""
    import torch

    before = torch.get_num_threads()
    report = run_check(fixture_path(FIXTURES[0]), profile=False)
    return report, before, torch.get_num_threads()


@needs_two_cores
def test_fixture_reports_qd010(threads_checked):
    report, _, _ = threads_checked
    assert "QD010" in codes(report)


@needs_two_cores
def test_threads_set_to_one_points_at_the_line_and_restores_threads(threads_checked):
    report, before, after = threads_checked
    [finding] = findings_of(report, "QD010")
    assert finding.location.line == 7
    assert after == before
