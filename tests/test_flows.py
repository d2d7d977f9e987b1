"""Modern quantization flows: FX and PT2E graph facts, flow failures mapped to causes, flow facts of the PT2E,
torchao and FX fixtures, saved models, imports that moved.

The rules these flows feed (QD012, QD013, QD017-QD019) are tested in tests/rules/. Unit tests build facts by hand
(no model runs); end-to-end tests check the shipped fixtures, never timings. Tests that need torchao skip without it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, SCRIPTS, as_json, codes, run_check
from factsbuild import act, node

from qdoctor import facts as F
from qdoctor.diagnose.flow_causes import diagnose, moved_module_hint, torchao_api_hint
from qdoctor.diagnose.graph_patterns import activation_qparams, float_regions, observer_nodes
from qdoctor.errors import TargetError
from qdoctor.facts import CrashInfo, QParams
from qdoctor.facts.graph import short_op, target_kind

# ----------------------------------------------------------------------------------------------- graph helpers


def test_short_op_and_target_kind():
    assert short_op("aten.conv2d.default") == "conv2d"
    assert short_op("torch._C._nn.gelu") == "gelu"
    assert short_op("quantized::linear") == "linear"
    assert short_op("aten::relu_") == "relu"
    assert target_kind("quantized_decomposed.quantize_per_tensor.default") == F.NODE_QUANTIZE
    assert target_kind("quantized_decomposed.dequantize_per_channel.default") == F.NODE_DEQUANTIZE
    assert target_kind("torch.quantize_per_tensor") == F.NODE_QUANTIZE
    assert target_kind("dequantize") == F.NODE_DEQUANTIZE
    assert target_kind("quantized::conv2d") == F.NODE_QUANTIZED_OP
    assert target_kind("aten.flatten.using_ints") == F.NODE_LAYOUT
    assert target_kind("aten.gelu.default") is None  # its inputs decide


def test_float_region_between_dequantize_and_quantize():
    graph = [
        node("x", F.NODE_INPUT, op="placeholder"),
        node("q", F.NODE_QUANTIZE, ["x"], qparams=act()),
        node("conv1", F.NODE_QUANTIZED_OP, ["q"], op="call_module", module="conv1"),
        node("dq", F.NODE_DEQUANTIZE, ["conv1"]),
        node("gelu", F.NODE_FLOAT_OP, ["dq"], module="act"),
        node("view", F.NODE_LAYOUT, ["gelu"]),
        node("q2", F.NODE_QUANTIZE, ["view"], qparams=act()),
        node("conv2", F.NODE_QUANTIZED_OP, ["q2"], op="call_module", module="conv2"),
        node("dq2", F.NODE_DEQUANTIZE, ["conv2"]),
        node("softmax", F.NODE_FLOAT_OP, ["dq2"]),  # the float tail: not a fallback
        node("output", F.NODE_OUTPUT, ["softmax"], op="output"),
    ]
    regions = float_regions(graph)
    assert len(regions) == 1
    assert regions[0].nodes == ["gelu"]
    assert regions[0].entries == ["dq"] and regions[0].exits == ["q2"]
    assert regions[0].modules == ["act"] and not regions[0].heavy


def test_float_region_joins_connected_ops_and_flags_heavy_ones():
    weight = QParams("torch.int8", -128, 127, per_channel=True, is_weight=True)
    graph = [
        node("x", F.NODE_INPUT, op="placeholder"),
        node("q", F.NODE_QUANTIZE, ["x"], qparams=act()),
        node("dq", F.NODE_DEQUANTIZE, ["q"], qparams=act()),
        node("w", F.NODE_ATTR, op="get_attr"),
        node("dqw", F.NODE_DEQUANTIZE, ["w"], qparams=weight),
        node("conv", F.NODE_REFERENCE_OP, ["dq", "dqw"], target="aten.conv2d.default"),
        node("silu", F.NODE_FLOAT_OP, ["conv"], target="aten.silu.default"),
        node("matmul", F.NODE_FLOAT_OP, ["silu", "silu"], target="aten.matmul.default"),
        node("q2", F.NODE_QUANTIZE, ["matmul"], qparams=act()),
        node("dq3", F.NODE_DEQUANTIZE, ["q2"], qparams=act()),
        node("output", F.NODE_OUTPUT, ["dq3"], op="output"),
    ]
    (region,) = float_regions(graph)
    assert region.nodes == ["silu", "matmul"]
    assert region.entries == ["conv"] and region.exits == ["q2"]
    assert region.heavy


def test_weight_dequantize_is_not_a_region_entry():
    weight = QParams("torch.int8", -128, 127, is_weight=True)
    graph = [
        node("w", F.NODE_ATTR, op="get_attr"),
        node("dqw", F.NODE_DEQUANTIZE, ["w"], qparams=weight),
        node("x", F.NODE_INPUT, op="placeholder"),
        node("mul", F.NODE_FLOAT_OP, ["x", "dqw"]),
        node("q", F.NODE_QUANTIZE, ["mul"], qparams=act()),
    ]
    assert float_regions(graph) == []


def test_observer_nodes_and_activation_qparams():
    graph = [
        node("obs", F.NODE_OBSERVER, op="call_module"),
        node("q", F.NODE_QUANTIZE, qparams=act("torch.int8", -128, 127)),
        node("qw", F.NODE_QUANTIZE, qparams=QParams("torch.int8", -127, 127, is_weight=True)),
    ]
    assert [n.name for n in observer_nodes(graph)] == ["obs"]
    assert activation_qparams(graph) == ["torch.int8 [-128, 127]"]


# -------------------------------------------------------------------------------------------- flow failures


def crash(type_: str, message: str, traceback: str = "", line: int | None = 7) -> CrashInfo:
    return CrashInfo(
        type=type_, message=message, phase="load", file="/work/model.py", line=line, code="x", traceback=traceback
    )


@pytest.mark.parametrize(
    "error, cause",
    [
        (
            crash("GuardOnDataDependentSymNode", "Could not guard on data-dependent expression Eq(u0, 1)"),
            "data-dependent-control-flow",
        ),
        (
            crash(
                "AttributeError",
                "'Net' object has no attribute 'meta'",
                'File "/x/torchao/quantization/pt2e/quantize_pt2e.py", line 90, in prepare_pt2e\n',
            ),
            "prepare-needs-exported-graph",
        ),
        (crash("NotImplementedError", "Calling eval() is not supported yet."), "exported-module-eval-train"),
        (crash("AssertionError", "Guard failed: input.size()[0] == 2"), "static-shape-guard"),
        (
            crash("AttributeError", "module 'torch._export' has no attribute 'capture_pre_autograd_graph'"),
            "capture-pre-autograd-graph-removed",
        ),
        (
            crash("ModuleNotFoundError", "No module named 'torch.ao.quantization.quantize_pt2e'"),
            "pt2e-moved-to-torchao",
        ),
        (
            crash("ImportError", "cannot import name 'int8_weight_only' from 'torchao.quantization' (/x/__init__.py)"),
            "torchao-api-moved",
        ),
        (
            crash("RuntimeError", "something odd", 'File "/x/torch/export/_trace.py", line 3, in _export\n'),
            "unrecognized",
        ),
        (
            crash("AttributeError", "module 'torch.export' has no attribute 'export_for_training'"),
            "export-for-training-removed",
        ),
        (
            crash(
                "AssertionError",
                "did not find fuser method for: (<class 'torch.nn.modules.conv.ConvTranspose2d'>, "
                "<class 'torch.nn.modules.batchnorm.BatchNorm2d'>, <class 'torch.nn.modules.activation.ReLU'>)",
            ),
            "no-fuser-for-sequence",
        ),
    ],
)
def test_flow_failures_are_mapped_to_causes(error, cause):
    failure = diagnose(error, "2.14.1", "0.18.0")
    assert failure is not None and failure.cause == cause
    assert failure.line == 7


def test_crash_outside_any_flow_is_not_a_flow_failure():
    assert (
        diagnose(crash("ValueError", "bad shape", 'File "/work/model.py", line 3, in forward\n'), "2.14.1", None)
        is None
    )


def test_hints_name_the_new_place_and_the_installed_version():
    assert "torchao.quantization.pt2e.quantize_pt2e" in moved_module_hint(
        "torch.ao.quantization.quantize_pt2e", "2.14.1"
    )
    assert moved_module_hint("numpy", "2.14.1") is None
    hint = torchao_api_hint("cannot import name 'Foo' from 'torchao.quantization'", "0.18.0")
    assert hint is not None and "torchao 0.18.0" in hint and "`Foo`" in hint


# ------------------------------------------------------------------------------------ end to end: FX graphs


def test_fx_converted_graph_facts_show_the_gelu_round_trip(check_fixture):
    report = check_fixture("fx_gelu_fallback.py")
    facts = report.facts
    assert facts.flow.flow == "fx" and facts.flow.stage == "converted"
    (region,) = float_regions(facts.graph)
    assert region.nodes == ["act"] and region.modules == ["act"]
    assert region.entries == ["dequantize_2"] and region.exits == ["quantize_per_tensor_3"]
    act_node = facts.graph_node("act")
    assert act_node.source is not None and act_node.source.line == 22  # x = self.act(self.conv2(x))
    pool = facts.graph_node("pool")
    assert pool.kind == F.NODE_QUANTIZED_OP  # a float module class fed int8 runs int8 kernels
    document = as_json(report)
    assert document["flow"]["flow"] == "fx" and document["flow"]["stage"] == "converted"
    assert document["flow"]["source"]["line"] == 34  # quantized_model = convert_fx(prepared)
    assert [(f["rule"], f["location"]["module"]) for f in document["findings"]] == [("QD005", "act")]


def test_fx_prepared_graph_is_not_converted(check_fixture):
    report = check_fixture("fx_prepared_sequential.py")
    assert report.facts.flow.flow == "fx" and report.facts.flow.stage == "prepared"
    assert len(observer_nodes(report.facts.graph)) == 6  # one observer module is shared by two nodes
    assert "QD006" in codes(report)


# ------------------------------------------------------------------------------------------ end to end: PT2E


def test_pt2e_prepared_not_converted_has_torchao_observers(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("pt2e_prepared_not_converted.py")
    assert report.facts.flow.flow == "pt2e" and report.facts.flow.stage == "prepared"
    assert {m.kind for m in report.facts.modules if m.path.startswith("activation_post_process")} == {F.OBSERVER}
    assert len(observer_nodes(report.facts.graph)) == 7  # activations and weights
    assert "QD006" in codes(report) and "QD012" not in codes(report)


# ------------------------------------------------------------------------------------------- saved models


def small_quantized_model():
    import torch.ao.quantization as tq
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        tq.QuantStub(), nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 4), tq.DeQuantStub()
    ).eval()
    model.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(model)
    prepared(torch.randn(1, 3, 16, 16))
    return tq.convert(prepared)


def test_torchscript_file_is_checked_from_its_graph(tmp_path):
    path = tmp_path / "model_int8.pt"
    torch.jit.save(torch.jit.script(small_quantized_model()), str(path))
    report = run_check(path)
    facts = report.facts
    assert facts.flow.flow == "torchscript" and facts.flow.saved_format == "torchscript"
    assert facts.target.inputs[0].shape == [1, 3, 16, 16]  # the first probed size that runs
    assert {m.path: m.kind for m in facts.modules}["1"] == F.QUANTIZED
    assert {m.path: m.weight_qscheme for m in facts.modules}["1"] == "torch.per_channel_affine"
    ops = {n.target: n.module for n in facts.graph if n.kind == F.NODE_QUANTIZED_OP}
    assert ops["quantized::conv2d"] == "1" and ops["quantized::linear"] == "4"
    (note,) = [n for n in report.notes if "does not record the quantized engine" in n]
    assert "2 packed int8 weights, all per-channel" in note


def test_exported_program_file_is_a_pt2e_subject(tmp_path):
    pytest.importorskip("torchao")
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torch import nn
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
    example = (torch.randn(1, 3, 16, 16),)
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    prepared(*example)
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(convert_pt2e(prepared), example), str(path))
    report = run_check(path)
    assert report.facts.flow.flow == "pt2e" and report.facts.flow.saved_format == "exported_program"
    assert codes(report) == ["QD012"]


def test_pickled_model_needs_trust_and_state_dict_is_refused(tmp_path):
    from torch import nn

    from qdoctor.load.target import load_target

    pickled = tmp_path / "full.pt"
    torch.save(nn.Sequential(nn.Linear(4, 4)), str(pickled))
    with pytest.raises(TargetError, match="--trust"):
        load_target(str(pickled))
    loaded = load_target(str(pickled), trust=True)
    assert loaded.saved_format == "pickle" and isinstance(loaded.subject, nn.Sequential)
    state = tmp_path / "weights.pt"
    torch.save(small_quantized_model().state_dict(), str(state))
    with pytest.raises(TargetError, match="holds a state_dict"):
        load_target(str(state))


def test_cli_refuses_a_pickle_without_trust_in_one_line(tmp_path):
    from torch import nn

    pickled = tmp_path / "full.pt"
    torch.save(nn.Sequential(nn.Linear(4, 4)), str(pickled))
    result = subprocess.run(
        [sys.executable, "-m", "qdoctor", "check", str(pickled), "--no-bench", "--no-profile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert "--trust" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------ imports that moved


def test_old_pt2e_import_says_where_it_moved():
    from qdoctor.run.check import load_target_explained

    with pytest.raises(TargetError, match="torchao.quantization.pt2e.quantize_pt2e"):
        load_target_explained(str(SCRIPTS / "pt2e_old_import.py"))


def test_torchao_name_that_moved_names_the_installed_version():
    torchao = pytest.importorskip("torchao")
    from qdoctor.load.options import LoadOptions
    from qdoctor.run.check import load_target_explained

    # --stop-on-error: the script stops at the import, before any model: one line
    with pytest.raises(TargetError, match=f"torchao {torchao.__version__} has no `int8_weight_only_config`"):
        load_target_explained(str(SCRIPTS / "torchao_moved_name.py"), options=LoadOptions(keep_going=False))
    # the default runs on past it: the model the script meant to quantize stays float, QD017 says why, at its line
    report = run_check(SCRIPTS / "torchao_moved_name.py", profile=False)
    [finding] = [f for f in report.findings if f.rule == "QD017"]
    assert f"torchao {torchao.__version__} has no `int8_weight_only_config`" in finding.message
    assert finding.location.line == report.facts.target.load_crash.line


# ------------------------------------------------------------------- one flow vocabulary (qdoctor.flows)


def _tiny() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2))


def test_model_flow_answers_every_consumer_from_one_look():
    import copy

    import torch.ao.quantization as tq
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from qdoctor.flows import detect, rebuild_flow
    from qdoctor.introspect.flow import model_flow

    example = (torch.randn(1, 3, 8, 8),)
    with_qconfig = _tiny().eval()
    with_qconfig.qconfig = tq.get_default_qconfig("x86")
    prepared = prepare_fx(_tiny().eval(), tq.get_default_qconfig_mapping("x86"), example)
    prepared(*example)
    models = {
        "float": _tiny(),
        "qconfig": with_qconfig,
        "dynamic": tq.quantize_dynamic(_tiny(), {torch.nn.Linear}),
        "fx prepared": prepared,
        "fx converted": convert_fx(copy.deepcopy(prepared)),  # convert_fx changes what it is given
        "exported": torch.export.export(_tiny().eval(), example).module(),
    }
    seen = {name: model_flow(m) for name, m in models.items()}
    answers = {}
    for name, look in seen.items():
        found, rebuilt = detect(look), rebuild_flow(look)
        answers[name] = (found.kind.name, found.stage, look.level, rebuilt.name if rebuilt else None)
    assert answers == {
        "float": ("none", None, 0, "eager"),
        "qconfig": ("none", None, 1, "eager"),
        "dynamic": ("dynamic", "converted", 3, "dynamic"),
        "fx prepared": ("fx", "prepared", 2, "fx"),
        "fx converted": ("fx", "converted", 3, "fx"),
        "exported": ("pt2e", None, 0, "fx"),
    }
    assert seen["dynamic"].dynamic_only and not any(f.qat for f in seen.values())


def test_a_sequence_without_a_fuser_names_its_layer_types_and_says_the_model_is_not_at_fault():
    message = (
        "did not find fuser method for: (<class 'torch.nn.modules.conv.ConvTranspose2d'>, "
        "<class 'torch.nn.modules.batchnorm.BatchNorm2d'>, <class 'torch.nn.modules.activation.ReLU'>)"
    )
    failure = diagnose(crash("AssertionError", message), "2.14.1", None)
    assert failure is not None and failure.step == "fuse_modules"
    assert "ConvTranspose2d + BatchNorm2d + ReLU" in failure.explanation
    assert "not at fault" in failure.explanation
