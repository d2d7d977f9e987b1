"""qdoctor in Python (qdoctor.api): check_model on live objects gives the CLI's findings, leaves the user's objects and
torch's global state as they were, renders every format, and answers bad input with qdoctor.errors types."""

from __future__ import annotations

import json
import re
import warnings

import live_models as M
import pytest
import torch
from conftest import codes, fixture_path

import qdoctor
from qdoctor.errors import (
    FloatSubjectError,
    InputsDoNotFitError,
    NotAModuleError,
    OptionError,
    TargetError,
)
from qdoctor.introspect.state import preserved_torch_state

FAST = {"bench": False, "verify": False}


def _frozen(value):
    """A comparable snapshot of a state_dict value (quantized tensors by their int representation and qparams)."""
    if isinstance(value, torch.Tensor):
        if value.is_quantized:
            params = (
                (value.q_scale(), value.q_zero_point())
                if value.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric)
                else (value.q_per_channel_scales().tolist(), value.q_per_channel_zero_points().tolist())
            )
            return ("q", str(value.dtype), tuple(value.shape), value.int_repr().flatten().tolist(), params)
        return ("t", str(value.dtype), tuple(value.shape), value.detach().flatten().tolist())
    if isinstance(value, (tuple, list)):
        return tuple(_frozen(v) for v in value)
    return repr(value)


def snapshot(model: torch.nn.Module) -> dict:
    """Everything of a model a check must not change: parameters, buffers and packed int8 weights, training flags,
    qconfig objects, hooks and the module tree itself (ids: no child replaced in place)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = {k: _frozen(v) for k, v in model.state_dict().items()}
    return {
        "state": state,
        "modules": [(name, type(m).__name__, id(m), m.training) for name, m in model.named_modules()],
        "qconfig": [(name, id(getattr(m, "qconfig", None))) for name, m in model.named_modules()],
        "hooks": [
            (name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for name, m in model.named_modules()
        ],
    }


def torch_state() -> tuple:
    return (
        torch.backends.quantized.engine,
        torch.get_num_threads(),
        torch.is_grad_enabled(),
        torch.get_default_dtype(),
        torch.random.get_rng_state().tolist(),
    )


@pytest.fixture(scope="module")
def unfused():
    base = M.float_model()
    return M.quantized(base, fuse=False), base


@pytest.fixture(scope="module")
def unfused_report(unfused):
    model, base = unfused
    return qdoctor.check_model(model, M.example_inputs(), float_model=base, bench=True, bench_time=0.05, verify=True)


# ---- findings, and the same as the CLI's


def test_check_model_finds_and_verifies_the_unfused_block(unfused_report):
    report = unfused_report
    found = [f for f in report.findings if f.rule == "QD004"]
    assert [f.location.module for f in found] == ["conv"]
    finding = found[0]
    assert finding.severity.value == "warning" and "fuse" in finding.fix and finding.message
    assert finding.verified is not None and finding.verified.applied is True
    assert finding.verified.details["groups"] == [["conv", "bn", "relu"]]
    assert report.facts.benchmark.speedup_ratio is not None  # timed with an interval
    assert report.facts.numerics.sqnr_db > 10
    assert report.ok is False and report.fail_on == "warning"
    assert "QD004" in repr(report) and "ok=False" in repr(report)


def test_ok_follows_fail_on(unfused):
    model, base = unfused
    assert qdoctor.check_model(model, M.example_inputs(), float_model=base, fail_on="error", **FAST).ok
    assert not qdoctor.check_model(model, M.example_inputs(), float_model=base, fail_on="info", **FAST).ok
    assert qdoctor.check_model(model, M.example_inputs(), float_model=base, fail_on="never", **FAST).ok


def test_select_and_ignore(unfused):
    model, base = unfused
    only = qdoctor.check_model(model, M.example_inputs(), float_model=base, select="QD009", **FAST)
    assert only.findings == [] and only.ok
    without = qdoctor.check_model(model, M.example_inputs(), float_model=base, ignore=["QD004"], **FAST)
    assert "QD004" not in codes(without)


# Fixtures that reproduce reports and tutorials (see each file's header), checked by the CLI's core on the script and
# by check_model on the same objects, picked from the script as the CLI picks them: the same rules at the same modules.
SAME_AS_CLI = [
    "healthy_static.py",
    "prepared_not_converted.py",
    "train_mode_bn.py",
    "qnnpack_engine_on_x86.py",
    "unfused_mlp_shared_relu.py",
    "qat_not_converted.py",
    "resnet_block_add_crash.py",
]
# Not threads_set_to_one.py: QD010 reports too few threads only when it can name what set them (a line of the script,
# an environment variable); live objects come with no script, so one deliberate torch.set_num_threads(1) goes unnamed.


def where(report) -> list[tuple[str, str]]:
    return sorted((f.rule, f.location.module or "") for f in report.findings)


@pytest.mark.parametrize("name", SAME_AS_CLI)
def test_check_model_matches_the_cli_on_the_same_objects(name, check_fixture):
    from qdoctor.load.target import load_target

    cli = check_fixture(name)
    with preserved_torch_state():  # the script may set the engine or the threads, as a notebook cell would
        loaded = load_target(str(fixture_path(name)))
        live = qdoctor.check_model(loaded.subject, loaded.inputs, float_model=loaded.float_baseline, **FAST)
    assert where(live) == where(cli), name
    assert sorted(s.rule for s in live.skipped) == sorted(s.rule for s in cli.skipped)


def test_a_crashing_model_is_a_diagnosis_not_an_exception():
    from qdoctor.load.target import load_target

    with preserved_torch_state():
        loaded = load_target(str(fixture_path("resnet_block_add_crash.py")))
        report = qdoctor.check_model(loaded.subject, loaded.inputs, float_model=loaded.float_baseline, **FAST)
    assert "QD011" in codes(report)
    assert report.facts.trace.crash is not None
    # the class is defined in the fixture: the crash points at its forward() line there
    crash = [f for f in report.findings if f.rule == "QD011"][0]
    assert crash.location.file and crash.location.file.endswith("resnet_block_add_crash.py")
    assert "+=" in (crash.location.code or "")


# ---- the user's objects and torch's global state


@pytest.mark.parametrize("stage", ["converted-in-train-mode", "prepared"])
def test_user_objects_and_torch_state_are_left_as_they_were(stage):
    base = M.float_model()
    if stage == "prepared":
        model = M.prepared(base, fuse=False)
    else:
        model = M.quantized(base, fuse=False).train()
    inputs = M.example_inputs()
    input_before = inputs[0].clone()
    before_model, before_float = snapshot(model), snapshot(base)
    with preserved_torch_state():
        torch.backends.quantized.engine = "fbgemm"  # not what the model was quantized for (x86)
        torch.set_num_threads(1)
        torch.manual_seed(123)
        before_torch = torch_state()
        report = qdoctor.check_model(model, inputs, float_model=base, bench=True, bench_time=0.05, verify=True)
        after_torch = torch_state()
    assert after_torch == before_torch
    assert snapshot(model) == before_model  # in train mode still, when it was
    assert model.training == (stage != "prepared")
    assert snapshot(base) == before_float
    assert torch.equal(inputs[0], input_before)
    expected = {"prepared": "QD006", "converted-in-train-mode": "QD004"}[stage]
    assert expected in codes(report)
    assert any(f.verified for f in report.findings)  # the fixes ran, on copies


def test_compare_model_leaves_the_float_model_and_recommends():
    base = M.float_model()
    before = snapshot(base)
    engine, threads = torch.backends.quantized.engine, torch.get_num_threads()
    result = qdoctor.compare_model(
        base, M.example_inputs(), calibration_data=M.calibration_batches, recipes="fp32,fx-x86", bench_time=0.05
    )
    assert [c.recipe for c in result.candidates] == ["fp32", "fx-x86"]
    assert all(c.ok for c in result.candidates), [(c.recipe, c.reason) for c in result.candidates]
    assert result.calibration_source and "calibration_data" in result.calibration_source
    assert snapshot(base) == before
    assert (torch.backends.quantized.engine, torch.get_num_threads()) == (engine, threads)
    assert json.loads(result.to_json()) == json.loads(json.dumps(result.to_dict()))
    assert "fx-x86" in result.to_markdown() and result.to_html().startswith("<!DOCTYPE html>")
    html = result._repr_html_()
    assert html.startswith('<div class="qdoctor-compare">') and "fx-x86" in html and "<body" not in html
    selectors = [
        s.strip()
        for rule in re.findall(r"([^{}]+)\{", re.search(r"<style>(.*?)</style>", html, re.S)[1])
        for s in rule.split(",")
    ]
    assert selectors and all(s.startswith("div.qdoctor-compare") for s in selectors), selectors


# ---- the Report in every format


def test_report_formats(unfused_report):
    from test_reporters import validate_sarif

    report = unfused_report
    as_dict = report.to_dict()
    assert as_dict["schema_version"] == 1 and as_dict["target"]["spec"] == "<in-process SmallCNN>"
    assert json.loads(report.to_json()) == json.loads(json.dumps(as_dict))
    markdown = report.to_markdown()
    assert markdown.startswith("## qdoctor check: `<in-process SmallCNN>`") and "QD004" in markdown
    sarif = json.loads(report.to_sarif())
    validate_sarif(sarif)
    assert "QD004" in {r["ruleId"] for r in sarif["runs"][0]["results"]}
    assert report.to_html().startswith("<!DOCTYPE html>")


def test_repr_html_is_a_self_contained_scoped_fragment(unfused_report):
    html = unfused_report._repr_html_()
    assert html.startswith('<div class="qdoctor-report">') and html.rstrip().endswith("</div>")
    assert "QD004" in html and "unfused-modules" in html and "<svg" in html
    for loads_something in ("<script", "<link", "<iframe", "@import", "url(", 'src="http', "<html", "<body"):
        assert loads_something not in html, loads_something
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    selectors = [s.strip() for rule in re.findall(r"([^{}]+)\{", style) for s in rule.split(",")]
    assert selectors and all(s.startswith("div.qdoctor-report") for s in selectors), selectors


def test_scoped_css():
    from qdoctor.report.render.html_report import scoped_css

    css = "body { margin: 0; }\nh1, .x > p { color: red; } .a { b: c; }"
    assert scoped_css(css, ".r") == ".r { margin: 0; }\n.r h1, .r .x > p { color: red; }\n.r .a { b: c; }"


# ---- bad input


def test_not_a_module():
    x = M.example_inputs()
    with pytest.raises(NotAModuleError, match="model must be a torch.nn.Module, got a builtins.str"):
        qdoctor.check_model("model.py", x)
    with pytest.raises(NotAModuleError, match="not its class"):
        qdoctor.check_model(M.SmallCNN, x)
    with pytest.raises(NotAModuleError, match="float_model must be"):
        qdoctor.check_model(M.quantized(M.float_model(), fuse=True), x, float_model={"conv": 1})
    assert issubclass(NotAModuleError, TypeError) and issubclass(NotAModuleError, TargetError)


def test_inputs_that_do_not_fit(unfused):
    model, base = unfused
    with pytest.raises(InputsDoNotFitError, match=r"layer `conv` \(Conv2d\).*expects 3 input channels, got 5"):
        qdoctor.check_model(model, torch.randn(1, 5, 16, 16), float_model=base, **FAST)
    with pytest.raises(InputsDoNotFitError, match="tensor or a tuple of tensors.*holds a builtins.int"):
        qdoctor.check_model(model, [1, 2, 3], float_model=base)
    with pytest.raises(InputsDoNotFitError, match="got a builtins.dict"):
        qdoctor.check_model(model, {"x": torch.randn(1, 3, 16, 16)}, float_model=base)
    with pytest.raises(InputsDoNotFitError, match="an empty tuple"):
        qdoctor.check_model(model, (), float_model=base)
    assert issubclass(InputsDoNotFitError, ValueError)


def test_a_float_model_as_the_subject():
    base = M.float_model()
    with pytest.raises(FloatSubjectError, match=r"float model.*compare_model"):
        qdoctor.check_model(base, M.example_inputs())
    model = M.quantized(base, fuse=True)
    with pytest.raises(OptionError, match=r"`float_model` \(SmallCNN\) is quantized"):
        qdoctor.check_model(model, M.example_inputs(), float_model=M.quantized(base, fuse=False))
    with pytest.raises(OptionError, match="the same object as `model`"):
        qdoctor.check_model(model, M.example_inputs(), float_model=model)
    with pytest.raises(OptionError, match="already quantized"):
        qdoctor.compare_model(model, M.example_inputs())


def test_bad_options(unfused):
    model, base = unfused
    x = M.example_inputs()
    with pytest.raises(OptionError, match="fail_on must be error, warning, info or never"):
        qdoctor.check_model(model, x, fail_on="loud")
    with pytest.raises(OptionError, match="not a rule code"):
        qdoctor.check_model(model, x, select=["fuse"])
    with pytest.raises(OptionError, match="bench_time"):
        qdoctor.check_model(model, x, bench_time=0)
    with pytest.raises(OptionError, match="evaluate must be a function"):
        qdoctor.check_model(model, x, evaluate=0.9)
    with pytest.raises(OptionError, match="use qdoctor.check_model"):
        qdoctor.check(model)
    with pytest.raises(TargetError, match="no such file: nowhere.py"):
        qdoctor.check("nowhere.py")
    with pytest.raises(OptionError, match="is a directory"):
        qdoctor.check(str(fixture_path("healthy_static.py").parent))


def test_errors_are_one_line(unfused):
    model, base = unfused
    for call in (
        lambda: qdoctor.check_model(model, torch.randn(1, 5, 16, 16), float_model=base, **FAST),
        lambda: qdoctor.check_model(M.float_model(), M.example_inputs()),
        lambda: qdoctor.check_model(object(), M.example_inputs()),
    ):
        with pytest.raises(TargetError) as raised:
            call()
        assert "\n" not in str(raised.value) and raised.value.__cause__ is None


# ---- a script, as on the command line (its own worker process)


def test_check_a_script_like_the_cli(check_fixture):
    report = qdoctor.check(str(fixture_path("qnnpack_engine_on_x86.py")), **FAST)
    cli = check_fixture("qnnpack_engine_on_x86.py")
    assert codes(report) == codes(cli) and "QD003" in codes(report)
    assert report.fail_on == "warning" and not report.ok
    assert qdoctor.check(str(fixture_path("qnnpack_engine_on_x86.py")), fail_on="error", **FAST).ok


def test_calibration_data_calibrates_the_verified_fixes(unfused):
    model, base = unfused
    report = qdoctor.check_model(
        model, M.example_inputs(), float_model=base, calibration_data=M.calibration_batches, bench=False, select="QD004"
    )
    assert [f.rule for f in report.findings] == ["QD004"]
    document = json.dumps(report.to_dict())
    assert "calibration_data() from the script (3 batches)" in document  # not the stand-in batches
    assert "for batch in calibration_data():" in document  # the fix-all code calls the caller's function
    assert report.facts.target.has_calibration_data
