"""QD015 quantized-on-cuda: unit tests on hand-built Facts, then end to end over its fixture."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import CUDA_CRASH, crash, healthy_facts, make_facts, mev, mod, q, run_rule

from qdoctor import facts as F

FIXTURES = ["fixtures/quantized_on_cuda.py", "fixtures/standin_cuda.py"]


def test_qd015_quiet_on_a_healthy_cpu_model():
    assert run_rule("QD015", healthy_facts()) == []


def test_qd015_gpu_message_on_hand_built_facts():
    raised = crash(CUDA_CRASH, module="conv1", line=30, type_="NotImplementedError")
    facts = make_facts(
        [mod("conv1", "Conv2d", F.QUANTIZED, line=8)],
        [mev("conv1", "Conv2d", [q()], [])],
        crash=raised,
        script='x = x.to("cuda")\n',
    )
    [finding] = run_rule("QD015", facts)
    assert finding.location.module == "conv1" and finding.location.line == 30
    assert "CPU kernels only" in finding.message and 'torch.device("cpu")' in finding.fix
    assert finding.evidence["cuda_line"].startswith("1:")
    assert run_rule("QD014", facts) == []


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd015(check_fixture, fixture):
    assert "QD015" in codes(check_fixture(fixture))


def test_quantized_on_cuda(check_fixture):
    report = check_fixture("fixtures/quantized_on_cuda.py")
    [finding] = findings_of(report, "QD015")
    assert finding.location.line == 24 and "QD014" not in codes(report)
