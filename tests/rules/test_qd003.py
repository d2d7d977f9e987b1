"""QD003 backend-mismatch: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import json
import platform

import pytest
from conftest import as_json, codes, findings_of
from factsbuild import QNNPACK_QCONFIG, X86_QCONFIG, env, healthy_facts, make_facts, mod, qconv, run_rule

from qdoctor import facts as F
from qdoctor.facts import CrashInfo

FIXTURES = ["fixtures/qnnpack_engine_on_x86.py", "fixtures/seed004_proposed_fix.py"]
ON_X86 = platform.machine().lower() in ("x86_64", "amd64")
QNNPACK_SCRIPT = 'import torch\ntorch.backends.quantized.engine = "qnnpack"\nqc = get_default_qconfig("qnnpack")\n'


def test_qd003_quiet_on_a_healthy_converted_model():
    assert run_rule("QD003", healthy_facts()) == []


def test_qd003_qnnpack_engine_on_x86_points_at_the_engine_line_and_recommends_x86():
    modules = [qconv("conv", qscheme="torch.per_tensor_affine")]
    (finding,) = run_rule("QD003", make_facts(modules, environment=env(engine="qnnpack"), script=QNNPACK_SCRIPT))
    assert finding.severity.value == "warning"
    assert finding.location.line == 2 and finding.location.module == "conv"
    assert finding.evidence["recommended_engine"] == "x86"
    assert 'engine = "x86"' in finding.fix and 'get_default_qconfig("x86")' in finding.fix
    assert "qnnpack" not in finding.fix


def test_qd003_x86_engine_on_arm_recommends_qnnpack():
    (finding,) = run_rule("QD003", make_facts([qconv("conv")], environment=env("aarch64", engine="fbgemm")))
    assert finding.evidence["recommended_engine"] == "qnnpack"
    assert 'engine = "qnnpack"' in finding.fix


def test_qd003_qnnpack_qconfig_on_x86_engine_from_module_qconfig():
    modules = [mod("conv", "Conv2d", F.FLOAT, qconfig=QNNPACK_QCONFIG, has_observer_attached=True)]
    (finding,) = run_rule("QD003", make_facts(modules))
    assert finding.evidence["qconfig_family"] == "qnnpack"
    assert finding.severity.value == "info"  # this CPU has VNNI: measured no slower, no less accurate
    assert "harmless" in finding.message and "without VNNI" in finding.message
    assert 'get_default_qconfig("onednn")' in finding.fix  # the VNNI-only alternative, as a comment
    (no_vnni,) = run_rule("QD003", make_facts(modules, environment=env(isa=["avx2"])))
    assert no_vnni.severity.value == "warning"
    assert "this CPU has no VNNI" in no_vnni.message


def test_qd003_converted_per_tensor_weights_need_a_second_sign_of_qnnpack():
    per_tensor = [qconv("conv", qscheme="torch.per_tensor_affine"), qconv("fc", qscheme="torch.per_tensor_affine")]
    # torch.ao.quantization.default_qconfig (per-tensor, reduce_range) is no backend's default: no finding.
    assert run_rule("QD003", make_facts(per_tensor)) == []
    scripted = run_rule("QD003", make_facts(per_tensor, script="m.qconfig = tq.get_default_qconfig('qnnpack')\n"))
    assert scripted[0].evidence["qconfig_family"] == "qnnpack" and scripted[0].location.line == 1
    full_range = [qconv("conv", qscheme="torch.per_tensor_affine", zp=140)]
    assert run_rule("QD003", make_facts(full_range))[0].evidence["qconfig_family"] == "qnnpack"


def test_qd003_crash_without_an_engine_is_an_error():
    crash = CrashInfo("RuntimeError", "Didn't find engine for operation quantized::conv2d_prepack NoQEngine", "load")
    (finding,) = run_rule(
        "QD003",
        make_facts([mod("conv", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG)], crash=crash, environment=env(engine="none")),
    )
    assert finding.severity.value == "error"
    assert "quantized::conv2d_prepack" in finding.message
    assert 'engine = "x86"' in finding.fix
    unsupported = CrashInfo("RuntimeError", "quantized engine FBGEMM is not supported", "load")
    arm = run_rule(
        "QD003", make_facts([qconv("conv")], crash=unsupported, environment=env("aarch64", engine="qnnpack"))
    )
    assert arm[0].severity.value == "error" and 'engine = "qnnpack"' in arm[0].fix


def test_qd003_x86_qconfig_under_qnnpack_on_arm_is_info_and_onednn_pairs_are_quiet():
    x86_prepared = [mod("conv", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG, has_observer_attached=True)]
    (finding,) = run_rule("QD003", make_facts(x86_prepared, environment=env("aarch64", engine="qnnpack")))
    assert finding.severity.value == "info" and "one bit" in finding.message
    assert 'get_default_qconfig("qnnpack")' in finding.fix
    qnnpack_prepared = [mod("conv", "Conv2d", F.FLOAT, qconfig=QNNPACK_QCONFIG, has_observer_attached=True)]
    assert run_rule("QD003", make_facts(qnnpack_prepared, environment=env(engine="onednn"))) == []


def test_qd003_matching_engine_and_qconfig_is_quiet():
    modules = [mod("conv", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG, has_observer_attached=True)]
    assert run_rule("QD003", make_facts(modules)) == []
    arm = [mod("conv", "Conv2d", F.FLOAT, qconfig=QNNPACK_QCONFIG, has_observer_attached=True)]
    assert run_rule("QD003", make_facts(arm, environment=env("aarch64", engine="qnnpack"))) == []


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.skipif(not ON_X86, reason="on ARM qnnpack is the right engine and qconfig")
@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd003(check_fixture, fixture):
    assert "QD003" in codes(check_fixture(fixture))


@pytest.mark.skipif(not ON_X86, reason="qnnpack is the right engine on ARM")
def test_qnnpack_engine_on_x86(check_fixture):
    report = check_fixture("fixtures/qnnpack_engine_on_x86.py")
    assert codes(report) == ["QD003"]
    (qd003,) = report.findings
    assert qd003.location.line == 7 and qd003.location.module == "conv1"
    assert qd003.evidence["engine"] == "qnnpack" and qd003.evidence["recommended_engine"] == "x86"
    assert 'torch.backends.quantized.engine = "x86"' in qd003.fix


@pytest.mark.skipif(not ON_X86, reason="on ARM a qnnpack qconfig is the right one")
def test_seed004_proposed_fix_reports_stub_backend_and_calibration_without_repeating_qnnpack(check_fixture):
    report = check_fixture("fixtures/seed004_proposed_fix.py")
    assert {"QD001", "QD002", "QD003"} <= set(codes(report))
    (qd003,) = findings_of(report, "QD003")
    assert qd003.location.module == "0" and qd003.location.line == 23  # the get_default_qconfig('qnnpack') line
    assert qd003.evidence["qconfig_family"] == "qnnpack"
    assert findings_of(report, "QD002")[0].location.module == "0"
    assert findings_of(report, "QD001")[0].location.line == 11  # nn.Conv2d(...) in the script
    fixes = "\n".join(f.fix for f in report.findings)
    assert "qnnpack" not in fixes  # never the seed's advice again
    assert 'get_default_qconfig("x86")' in fixes
    messages = json.dumps([f["message"] for f in as_json(report)["findings"]])
    assert "use `qnnpack`" not in messages and "`x86`" in messages
