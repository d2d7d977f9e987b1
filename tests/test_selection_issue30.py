"""Issue 30: selection that follows what the script did, and the six classes of scripts it was seen to misread.

Each class has its own fixture, written the way the public reports and tutorials write it (links at the top of each),
and its own test; the mechanisms are general (flow steps recorded while the script runs, signatures checked against
the contract, consequences marked by the root cause's rule), so the tests also pin the mechanism, not only the case.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import FIXTURES, as_json, codes, findings_of, run_check

from qdoctor.load.target import load_target


def _script(tmp_path, text: str) -> str:
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(text))
    return str(path)


# ---- class 1: the converted model, not the prepared model convert_fx consumed ----


@pytest.mark.parametrize(
    ("fixture", "subject", "float_name", "spent"),
    [
        ("fx_convert_timed_in_loop.py", "qnet", "net", "prepared"),
        ("fx_qat_convert_new_name.py", "int8_net", "float_net", "prepared"),
    ],
)
def test_the_subject_is_the_converted_model_not_the_prepared_one_convert_fx_consumed(
    fixture, subject, float_name, spent
):
    loaded = load_target(str(FIXTURES / fixture))
    t = loaded.target
    assert (t.subject_name, t.float_name) == (subject, float_name)
    assert any(s.startswith(f"`{spent}` is not a subject: convert_fx") for s in t.selection)
    steps = [s.step for s in loaded.flow_steps.steps] if loaded.flow_steps else []
    assert steps[-1] == "convert_fx" and steps[0] in ("prepare_fx", "prepare_qat_fx")
    report = run_check(FIXTURES / fixture, profile=False)
    assert report.facts.crash is None and report.facts.target.load_crash is None
    assert not {"QD006", "QD014", "QD016"} & set(codes(report))
    assert not [f for f in report.findings if f.severity.value == "error"]


def test_the_recorded_flow_steps_leave_the_script_s_calls_as_they_were(tmp_path):
    """The flow-step wrappers return what torch returns and are gone afterwards."""
    import torch.ao.quantization.quantize_fx as quantize_fx

    before = quantize_fx.convert_fx
    loaded = load_target(
        _script(
            tmp_path,
            """
            import torch
            from torch import nn
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            net = nn.Sequential(nn.Linear(4, 4)).eval()
            prepared = prepare_fx(net, get_default_qconfig_mapping("x86"), (torch.randn(1, 4),))
            prepared(torch.randn(1, 4))
            same_name = convert_fx.__name__
            quantized = convert_fx(prepared)
            """,
        )
    )
    assert quantize_fx.convert_fx is before
    assert loaded.namespace["same_name"] == "convert_fx"
    assert loaded.target.subject_name == "quantized" and loaded.target.float_name == "net"


def test_the_converted_model_the_script_ran_last_wins_among_quantized_models(tmp_path):
    loaded = load_target(
        _script(
            tmp_path,
            """
            import torch
            from torch import nn

            net = nn.Sequential(nn.Linear(8, 8)).eval()
            first = torch.ao.quantization.quantize_dynamic(net, {nn.Linear})
            second = torch.ao.quantization.quantize_dynamic(net, {nn.Linear})
            x = torch.randn(2, 8)
            for _ in range(5):
                first(x)
            second(x)
            """,
        )
    )
    assert loaded.target.subject_name == "second"


# ---- class 2: the FX dynamic word-language-model tutorial ----


def test_fx_dynamic_lstm_tutorial_runs_on_data_and_hidden_with_its_float_twin():
    loaded = load_target(str(FIXTURES / "fx_dynamic_lstm_tutorial.py"))
    t = loaded.target
    assert (t.subject_name, t.float_name) == ("quantized_model", "model")
    data, (h, c) = loaded.inputs  # the (data, hidden) evaluate() passed, not the one token of example_inputs
    assert tuple(data.shape) == (25, 1) and tuple(h.shape) == (2, 1, 64) == tuple(c.shape)
    assert any(s.startswith("`example_inputs` is the script's own value") and "hidden" in s for s in t.selection)
    assert any(s.startswith("`evaluate` is the script's own helper") for s in t.selection)
    assert loaded.evaluate is None and not t.has_evaluate
    report = run_check(FIXTURES / "fx_dynamic_lstm_tutorial.py", profile=False)
    assert report.facts.crash is None and "QD014" not in codes(report)
    assert not [f for f in report.findings if f.severity.value == "error"]
    assert report.facts.numerics is not None  # the float twin ran on the same (data, hidden)
    assert any("script's own helper" in n for n in report.notes)


def test_contract_functions_with_the_contract_signature_are_still_used(tmp_path):
    loaded = load_target(
        _script(
            tmp_path,
            """
            import torch
            from torch import nn

            float_model = nn.Sequential(nn.Linear(4, 4)).eval()
            quantized_model = torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear})
            example_inputs = (torch.randn(1, 4),)

            def calibration_data(batches=2):
                return [(torch.randn(1, 4),) for _ in range(batches)]

            def evaluate(model, data=None):
                return 1.0
            """,
        )
    )
    assert loaded.evaluate is not None and loaded.calibration_data is not None
    assert not any("own helper" in s for s in loaded.target.selection)


def test_example_inputs_that_fit_no_forward_are_kept_when_the_script_never_ran_a_model(tmp_path):
    """Without a call to fall back on, the contract's value stays (the input check then says what does not fit)."""
    loaded = load_target(
        _script(
            tmp_path,
            """
            import torch
            from torch import nn

            class Pair(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(4, 4)

                def forward(self, x, y):
                    return self.fc(x) + y

            quantized_model = torch.ao.quantization.quantize_dynamic(Pair(), {nn.Linear})
            example_inputs = torch.randn(1, 4)
            """,
        )
    )
    assert loaded.target.inputs_name == "example_inputs" and len(loaded.inputs) == 1


# ---- class 3: a crash inside torch's own fusion code is the fusion step's failure ----


def test_fuse_fx_crash_in_torch_fusion_is_qd017_naming_step_pair_and_workaround():
    report = run_check(FIXTURES / "crashes" / "fuse_fx_grouped_convtranspose_bn.py", profile=False)
    assert "QD014" not in codes(report)
    [finding] = findings_of(report, "QD017")
    assert finding.evidence["step"] == "fuse_fx" and finding.evidence["cause"] == "fusion-failed"
    assert finding.evidence["layers"] == [["deconv", "bn"]]
    assert "ConvTranspose + BatchNorm" in finding.message and "`deconv` (ConvTranspose2d, groups 2)" in finding.message
    assert "leave that pair unfused" in finding.message
    assert "backend_config=backend_config" in finding.fix


def test_the_leave_unfused_workaround_runs_and_quantizes_the_model():
    """The fix QD017 prints, pasted after the reproduction, runs: fuse_fx, prepare_fx and convert_fx all pass."""
    from qdoctor.diagnose.flow_causes import LEAVE_UNFUSED

    source = (FIXTURES / "crashes" / "fuse_fx_grouped_convtranspose_bn.py").read_text()
    source = source.replace("fused_model = fuse_fx(model)\n", "")
    workaround = LEAVE_UNFUSED.format(pair="ConvTranspose + BatchNorm", names=["ConvTranspose", "BatchNorm"])
    check = """
import torch
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
x = torch.randn(1, 4, 8, 8)
prepared = prepare_fx(model.eval(), get_default_qconfig_mapping("x86"), (x,), backend_config=backend_config)
prepared(x)
out = convert_fx(prepared, backend_config=backend_config)(x)
"""
    namespace: dict = {}
    exec(compile(source + "\n" + workaround + "\n" + check, "workaround.py", "exec"), namespace)
    assert tuple(namespace["out"].shape) == (1, 4, 8, 8)


def test_a_crash_inside_a_torch_ao_quantization_function_the_step_list_does_not_name_is_that_step():
    from qdoctor.diagnose.flow_causes import _step_from_traceback

    traceback = (
        'Traceback (most recent call last):\n  File "/home/u/model.py", line 9, in <module>\n'
        '  File "/site-packages/torch/ao/quantization/quantize.py", line 70, in propagate_qconfig_\n'
        '  File "/site-packages/torch/ao/quantization/quantize.py", line 60, in _propagate_qconfig_helper\n'
    )
    assert _step_from_traceback(traceback) == "propagate_qconfig_"
    observer = (
        'Traceback (most recent call last):\n  File "/home/u/model.py", line 9, in <module>\n'
        '  File "/site-packages/torch/nn/modules/module.py", line 1, in _call_impl\n'
        '  File "/site-packages/torch/ao/quantization/observer.py", line 5, in forward\n'
    )
    assert _step_from_traceback(observer) is None  # a model's run, not a flow step


# ---- class 4: a consequence is marked, in every format, and not counted as a second fault ----


def test_qd004_after_a_refused_fusion_is_a_consequence_of_qd009_in_every_format():
    from qdoctor.report.render import OutputFormat, render

    report = run_check(FIXTURES / "fuse_in_train_mode_then_quantized.py", profile=False)
    [root] = [f for f in findings_of(report, "QD009") if f.leads_to]
    [unfused] = findings_of(report, "QD004")
    assert root.consequence_of is None and unfused.consequence_of == "QD009"
    data = as_json(report)
    assert {f["rule"]: f["consequence_of"] for f in data["findings"]}["QD004"] == "QD009"
    sarif = json.loads(render(report, OutputFormat.sarif))
    [result] = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "QD004"]
    assert result["properties"]["consequenceOf"] == "QD009"
    faults = len([f for f in report.findings if not f.consequence_of])
    for fmt in ("terminal", "markdown", "html"):
        text = render(report, OutputFormat(fmt), width=400)
        assert "consequence of QD009" in text, fmt
        assert f"{faults} finding" in text and "+1 consequence" in text, fmt


def test_consequences_are_marked_by_the_registry_for_any_rule():

    from qdoctor.diagnose.findings import Finding, Location, Severity
    from qdoctor.diagnose.registry import mark_consequences

    def finding(rule: str, leads_to: tuple[str, ...] = ()) -> Finding:
        return Finding(rule, rule.lower(), Severity.WARNING, "m", Location(), leads_to=leads_to)

    root, follower, other = finding("QD003", ("QD016",)), finding("QD016"), finding("QD004")
    mark_consequences([follower, root, other])
    assert (root.consequence_of, follower.consequence_of, other.consequence_of) == (None, "QD003", None)


# ---- class 5: QD003 reads the FX backend_config / qconfig_mapping ----


def test_fx_qnnpack_backend_config_on_x86_is_qd003_with_qd016_its_consequence():
    report = run_check(FIXTURES / "fx_qat_qnnpack_backend_config_on_x86.py", profile=False)
    flow = report.facts.flow
    assert flow is not None and flow.fx_backend_config == "qnnpack"
    assert flow.fx_qconfig is not None and flow.fx_qconfig.activation_dtype == "torch.qint8"
    if report.facts.environment.quantized_engine != "x86":
        pytest.skip("the x86 engine is not this machine's")
    [mismatch] = findings_of(report, "QD003")
    assert "backend_config" in " ".join(mismatch.evidence["qconfig_evidence"])
    assert mismatch.severity.value == "warning"
    assert all(f.consequence_of == "QD003" for f in findings_of(report, "QD016"))


# ---- style: the script's main block, models inside functions ----


def test_a_flow_inside_main_with_argparse_defaults_is_followed(tmp_path):
    loaded = load_target(
        _script(
            tmp_path,
            """
            import argparse

            import torch
            from torch import nn

            def run(args):
                net = nn.Sequential(nn.Linear(args.features, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
                q = torch.ao.quantization.quantize_dynamic(net, {nn.Linear})
                x = torch.randn(args.batch, args.features)
                for name, model in [("fp32", net), ("int8", q)]:
                    print(name, model(x).shape)

            if __name__ == "__main__":
                parser = argparse.ArgumentParser()
                parser.add_argument("--features", type=int, default=32)
                parser.add_argument("--batch", type=int, default=8)
                run(parser.parse_args())
            """,
        )
    )
    t = loaded.target
    assert (t.subject_name, t.float_name) == ("q (in run)", "net (in run)")
    assert tuple(loaded.inputs[0].shape) == (8, 32) and not t.script_errors


def test_models_kept_only_in_a_dict_and_timed_in_a_loop_are_found_and_named(tmp_path):
    loaded = load_target(
        _script(
            tmp_path,
            """
            import torch
            from torch import nn

            def build():
                base = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
                return {"fp32": base, "int8": torch.ao.quantization.quantize_dynamic(base, {nn.Linear})}

            def bench(models, x):
                for name, model in models.items():
                    model(x)

            bench(build(), torch.randn(4, 16))
            """,
        )
    )
    t = loaded.target
    assert (t.subject_name, t.float_name) == ("models['int8'] (in bench)", "models['fp32'] (in bench)")
    assert tuple(loaded.inputs[0].shape) == (4, 16)


_STEP_RAISES_IN_MAIN = """\
import torch
import torch.nn as nn
import torch.ao.quantization as tq


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.up(self.bn(self.conv(self.quant(x)))))


def main():
    net = Net(){mode}
    torch.backends.quantized.engine = "x86"
    net.qconfig = tq.get_default_qconfig("x86")
    {step}
    prepared = tq.prepare(net)
    prepared(torch.randn(1, 3, 16, 16))
    return tq.convert(prepared)


main()
"""


@pytest.mark.parametrize(
    ("mode", "step", "code", "fix_names"),
    [
        # prepare() refuses the per-channel weight observer on ConvTranspose2d: the fix names the model and layer
        (".eval()", "net = tq.fuse_modules(net, [['conv', 'bn']])", "QD016", "net.up.qconfig"),
        # fuse_modules refuses a model in train mode ("Fusion only for eval!")
        ("", "net = tq.fuse_modules(net, [['conv', 'bn']])", "QD009", "net.eval()"),
    ],
)
def test_a_flow_step_that_raises_before_any_model_is_bound_is_diagnosed_from_its_crash(
    tmp_path, mode, step, code, fix_names
):
    """Inside main() the script dies in a flow step before any model exists at module level: there are no model
    facts, yet the rule that owns the step's failure answers for it (matrix cell upsampler-conv_transpose_per_channel
    in the function and __main__ styles missed QD016 this way)."""
    report = run_check(_script(tmp_path, _STEP_RAISES_IN_MAIN.format(mode=mode, step=step)))
    found = [f for f in report.findings if f.rule == code]
    assert found and (found[0].location.line or 0) > 0, codes(report)
    assert fix_names in (found[0].fix or ""), found[0].fix
    assert not {"QD014", "QD017"} & set(codes(report))


def test_a_model_converted_each_epoch_is_spent_by_its_last_convert():
    """The static quantization tutorial's QAT loop converts `qat_model` every epoch: the note names the last result,
    the one the script holds at the end, not an earlier epoch's (held only by its evaluate() helper)."""
    from torch import nn

    from qdoctor.load.flow_steps import FlowLog, FlowStep

    qat_model, first, last = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    log = FlowLog([FlowStep("convert", qat_model, r, False, 9) for r in (first, last)])
    spent = log.spent(qat_model, lambda result: True)
    assert spent is not None and spent.result is last
    assert log.spent(qat_model, lambda result: result is first).result is first  # only the first is still held
