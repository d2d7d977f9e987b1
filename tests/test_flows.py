"""Modern quantization flows: FX graph facts, PT2E (QD012, QD017-QD019), torchao quantize_ (QD013), saved models.

Unit tests build facts by hand (no model runs); end-to-end tests check the shipped fixtures for rule codes and
locations, never timings. Tests that need torchao skip without it. Tests that call torch.compile take a minute or
more on 2 cores: they run only with QDOCTOR_SLOW_TESTS=1.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import FIXTURES, ROOT, SCRIPTS, as_json, codes, run_check

from qdoctor import facts as F
from qdoctor.diagnose.flow_causes import diagnose, moved_module_hint, torchao_api_hint
from qdoctor.diagnose.graphs import activation_qparams, float_regions, observer_nodes
from qdoctor.errors import TargetError
from qdoctor.facts import (
    CompileInfo,
    CrashInfo,
    Environment,
    Facts,
    FlowInfo,
    GraphNode,
    ModuleInfo,
    ModuleTime,
    OpTime,
    Profile,
    QParams,
    Target,
)
from qdoctor.facts.graph import short_op, target_kind

slow = pytest.mark.skipif(
    os.environ.get("QDOCTOR_SLOW_TESTS") != "1", reason="calls torch.compile (minutes on 2 cores): QDOCTOR_SLOW_TESTS=1"
)


def environment(machine: str = "x86_64") -> Environment:
    return Environment(
        torch_version="2.14.1",
        python_version="3.11",
        platform="Linux",
        machine=machine,
        cpu_model="test",
        cpu_isa=["avx2", "avx512f", "avx512_vnni"] if machine == "x86_64" else ["asimd", "asimddp"],
        cpu_capability="AVX512" if machine == "x86_64" else "DEFAULT",
        cpu_count=2,
        quantized_engine="x86",
        supported_engines=["x86", "qnnpack"],
        num_threads=2,
        num_interop_threads=2,
        thread_env={},
    )


def facts_with(graph=None, flow=None, modules=None, profile=None, machine="x86_64", script="") -> Facts:
    target = Target(
        spec="model.py",
        file="/work/model.py",
        subject_name="quantized_model",
        float_name="float_model",
        inputs_name="example_inputs",
        inputs=[],
        script_text=script,
    )
    return Facts(
        target=target, environment=environment(machine), graph=graph, flow=flow, modules=modules, profile=profile
    )


def node(name, kind, inputs=(), target="", op="call_function", module=None, qparams=None, module_type=None):
    return GraphNode(
        name=name,
        op=op,
        target=target or name,
        kind=kind,
        inputs=list(inputs),
        module=module,
        qparams=qparams,
        module_type=module_type,
    )


def act(dtype="torch.uint8", qmin=0, qmax=255):
    return QParams(dtype, qmin, qmax)


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


# ------------------------------------------------------------------------------------------- rules on facts


def pt2e_graph():
    weight = QParams("torch.int8", -128, 127, per_channel=True, is_weight=True)
    return [
        node("x", F.NODE_INPUT, op="placeholder"),
        node("q", F.NODE_QUANTIZE, ["x"], qparams=act()),
        node("dq", F.NODE_DEQUANTIZE, ["q"], qparams=act()),
        node("w", F.NODE_ATTR, op="get_attr"),
        node("dqw", F.NODE_DEQUANTIZE, ["w"], qparams=weight),
        node("conv2d", F.NODE_REFERENCE_OP, ["dq", "dqw"], target="aten.conv2d.default", module="conv"),
        node("output", F.NODE_OUTPUT, ["conv2d"], op="output"),
    ]


def run_rule(code: str, facts: Facts):
    from qdoctor.diagnose.registry import get_rule

    return list(get_rule(code).check(facts))


@pytest.mark.parametrize(
    "compiled, fires",
    [
        (None, True),
        (CompileInfo(backend="inductor", freezing=False, freezing_source="default (off)"), True),
        (CompileInfo(backend="eager", freezing=True), True),
        (CompileInfo(backend="inductor", freezing=True, freezing_source="torch._inductor.config"), False),
    ],
)
def test_qd012_fires_unless_compiled_by_inductor_with_freezing(compiled, fires):
    facts = facts_with(graph=pt2e_graph(), flow=FlowInfo(flow="pt2e", stage="converted", compiled=compiled))
    findings = run_rule("QD012", facts)
    assert bool(findings) == fires
    if fires:
        assert findings[0].location.module == ""
        assert "freezing = True" in findings[0].fix


def test_qd012_ignores_fx_and_prepared_models():
    assert run_rule("QD012", facts_with(graph=pt2e_graph(), flow=FlowInfo(flow="fx", stage="converted"))) == []
    assert run_rule("QD012", facts_with(graph=pt2e_graph(), flow=FlowInfo(flow="pt2e", stage="prepared"))) == []


def torchao_layer(path: str, activation_quantized: bool) -> ModuleInfo:
    return ModuleInfo(
        path=path,
        type="Linear",
        type_module="torch.nn.modules.linear",
        kind=F.TORCHAO_QUANTIZED,
        is_leaf=True,
        training=False,
        weight_tensor_type="torchao.quantization.Int8Tensor",
        weight_storage_dtype="torch.int8",
        activation_quantized=activation_quantized,
    )


def profile_of(*modules: ModuleTime) -> Profile:
    return Profile(runs=1, total_ms=1.0, categories=[], top_ops=[], modules=list(modules))


def test_qd013_finds_the_float_matmul_fallback_per_layer():
    ops_fallback = [OpTime("aten::mm", F.CAT_FLOAT, 1.0, 1), OpTime("aten::copy_", F.CAT_FLOAT, 0.5, 1)]
    ops_int8 = [OpTime("aten::_int_mm", F.CAT_INT8, 0.3, 1), OpTime("aten::copy_", F.CAT_FLOAT, 0.1, 1)]
    facts = facts_with(
        modules=[torchao_layer("fc1", False), torchao_layer("fc2", True)],
        profile=profile_of(
            ModuleTime("fc1", "Linear", F.TORCHAO_QUANTIZED, 1.6, ops=ops_fallback),
            ModuleTime("fc2", "Linear", F.TORCHAO_QUANTIZED, 0.5, ops=ops_int8),
        ),
    )
    findings = run_rule("QD013", facts)
    assert [f.location.module for f in findings] == ["fc1"]
    assert findings[0].evidence["cause"] == "float-matmul" and findings[0].evidence["activation_quantized"] is False
    assert "Int8DynamicActivationInt8WeightConfig" in findings[0].fix and "torch.bfloat16" in findings[0].fix


@pytest.mark.parametrize(
    "int8_ms, quantize_ms, cause, fix",
    [
        (0.3, 0.9, "eager-activation-quantization", "torch.compile"),  # the eager quantization around it dominates
        (0.8, 0.1, "slow-int8-kernel", "filter_fn"),  # the int8 kernel alone costs the whole fp32 layer
    ],
)
def test_qd013_int8_layer_slower_than_its_fp32_twin(int8_ms, quantize_ms, cause, fix):
    ops = [OpTime("aten::_int_mm", F.CAT_INT8, int8_ms, 1), OpTime("aten::round", F.CAT_QDQ, quantize_ms, 1)]
    facts = facts_with(
        modules=[torchao_layer("fc", True)],
        profile=profile_of(ModuleTime("fc", "Linear", F.TORCHAO_QUANTIZED, 1.2, ops=ops)),
    )
    facts.float_profile = profile_of(ModuleTime("fc", "Linear", F.FLOAT, 0.6))
    (finding,) = run_rule("QD013", facts)
    assert finding.evidence["cause"] == cause and fix in finding.fix
    facts.flow = FlowInfo(flow="torchao", compiled=CompileInfo(backend="inductor"))
    assert run_rule("QD013", facts) == []  # compiled: not judged from eager per-layer times


def test_qd018_flags_xnnpack_on_x86_and_x86_quantizer_on_arm():
    signed = [node("q", F.NODE_QUANTIZE, qparams=act("torch.int8", -128, 127))]
    script = "quantizer = XNNPACKQuantizer()\n"
    flow = FlowInfo(flow="pt2e", stage="converted", quantizers=["x.XNNPACKQuantizer"])
    (finding,) = run_rule("QD018", facts_with(graph=signed, flow=flow, script=script))
    assert finding.location.line == 1 and "X86InductorQuantizer" in finding.fix
    unsigned = [node("q", F.NODE_QUANTIZE, qparams=act())]
    x86 = FlowInfo(flow="pt2e", stage="converted", quantizers=["x.X86InductorQuantizer"])
    assert run_rule("QD018", facts_with(graph=unsigned, flow=x86)) == []
    (arm,) = run_rule("QD018", facts_with(graph=unsigned, flow=x86, machine="aarch64"))
    assert "ArmInductorQuantizer" in arm.fix


def test_qd018_reads_signed_activations_when_the_quantizer_object_is_gone():
    signed = [node("q", F.NODE_QUANTIZE, qparams=act("torch.int8", -128, 127))]
    assert run_rule("QD018", facts_with(graph=signed, flow=FlowInfo(flow="pt2e", stage="converted")))


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
    assert as_json(report)["findings"] is not None


def test_fx_prepared_graph_is_not_converted(check_fixture):
    report = check_fixture("fx_prepared_sequential.py")
    assert report.facts.flow.flow == "fx" and report.facts.flow.stage == "prepared"
    assert len(observer_nodes(report.facts.graph)) == 6  # one observer module is shared by two nodes
    assert "QD006" in codes(report)


# ------------------------------------------------------------------------------------------ end to end: PT2E


def test_pt2e_run_eagerly_reports_qd012_at_convert_line(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("pt2e_not_lowered.py")
    assert report.facts.flow.flow == "pt2e" and report.facts.flow.stage == "converted"
    assert codes(report) == ["QD012"]
    (finding,) = report.findings
    assert finding.location.module == "" and finding.location.line == 35  # quantized_model = convert_pt2e(prepared)
    assert finding.evidence["reference_ops"] >= 4
    assert "X86InductorQuantizer" in report.facts.flow.quantizers[0]
    document = as_json(report)
    assert document["flow"]["flow"] == "pt2e" and document["graph"]["kinds"]["reference_op"] >= 4


def test_pt2e_fp32_ops_between_quantized_ops(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("pt2e_fp32_between.py")
    qd019 = {f.location.module: f for f in report.findings if f.rule == "QD019"}
    assert set(qd019) == {"silu", "mean"}
    assert qd019["silu"].location.line == 19
    assert qd019["silu"].evidence["entries"] == ["conv2d"]
    assert 'set_module_name_qconfig("stem", None)' in qd019["silu"].fix


@pytest.mark.skipif(not torch.backends.cpu.get_cpu_capability().startswith("AVX"), reason="x86 only")
def test_pt2e_xnnpack_quantizer_on_x86(check_fixture):
    pytest.importorskip("torchao.testing.pt2e._xnnpack_quantizer")
    report = check_fixture("pt2e_xnnpack_on_x86.py")
    (finding,) = [f for f in report.findings if f.rule == "QD018"]
    assert finding.location.line == 15  # quantizer = XNNPACKQuantizer()...
    assert finding.evidence["activation_qparams"] == ["torch.int8 [-128, 127]"]


def test_pt2e_export_failure_is_mapped_to_data_dependent_control_flow(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("pt2e_export_failed.py")
    (finding,) = report.findings
    assert finding.rule == "QD017" and finding.evidence["cause"] == "data-dependent-control-flow"
    assert finding.location.line == 16  # if x.abs().mean() > 1.0:
    assert "torch.cond" in finding.fix
    assert not any("not quantized" in note for note in report.notes)


def test_pt2e_prepared_not_converted_has_torchao_observers(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("pt2e_prepared_not_converted.py")
    assert report.facts.flow.flow == "pt2e" and report.facts.flow.stage == "prepared"
    assert {m.kind for m in report.facts.modules if m.path.startswith("activation_post_process")} == {F.OBSERVER}
    assert len(observer_nodes(report.facts.graph)) == 7  # activations and weights
    assert "QD006" in codes(report) and "QD012" not in codes(report)


@slow
def test_pt2e_compiled_without_freezing_reports_qd012():
    pytest.importorskip("torchao")
    report = run_check(FIXTURES / "pt2e_compiled_no_freezing.py")
    (finding,) = [f for f in report.findings if f.rule == "QD012"]
    assert finding.evidence["compile_backend"] == "inductor" and finding.evidence["inductor_freezing"] is False
    assert finding.location.line == 19  # model = torch.compile(converted)
    assert report.facts.flow.compiled.first_call_s is not None


# ----------------------------------------------------------------------------------------- end to end: torchao


def test_torchao_weight_only_falls_back_to_float_matmul(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("torchao_weight_only.py")
    layers = {m.path: m for m in report.facts.modules if m.kind == F.TORCHAO_QUANTIZED}
    assert set(layers) == {"fc1", "fc2", "out"}
    assert layers["fc1"].weight_storage_dtype == "torch.int8" and layers["fc1"].activation_quantized is False
    qd013 = {f.location.module: f.location.line for f in report.findings if f.rule == "QD013"}
    assert qd013 == {"fc1": 13, "fc2": 15, "out": 16}


def test_torchao_dynamic_int8_has_an_int8_kernel(check_fixture):
    pytest.importorskip("torchao")
    report = check_fixture("torchao_dynamic_int8.py")
    assert report.facts.flow.flow == "torchao"
    # torch._int_mm runs: never the float-matmul fallback (whether eager quantization overhead shows depends on timing)
    assert not [f for f in report.findings if f.rule == "QD013" and f.evidence["cause"] == "float-matmul"]
    assert {m.path for m in report.facts.modules if m.activation_quantized} == {"0", "2"}


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
    from qdoctor.run.check import load_target_explained

    with pytest.raises(TargetError, match=f"torchao {torchao.__version__} has no `int8_weight_only_config`"):
        load_target_explained(str(SCRIPTS / "torchao_moved_name.py"))


# ------------------------------------------------------------------- one flow vocabulary (introspect.flow)


def _tiny() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2))


def test_model_flow_answers_every_consumer_from_one_look():
    import copy

    import torch.ao.quantization as tq
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from qdoctor.introspect.flow import model_flow
    from qdoctor.prescribe.recipe import detect_flow

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
    answers = {name: (f.flow, f.stage, f.level, detect_flow(models[name])) for name, f in seen.items()}
    assert answers == {
        "float": ("none", None, 0, "eager"),
        "qconfig": ("none", None, 1, "eager"),
        "dynamic": ("eager", "converted", 3, "dynamic"),
        "fx prepared": ("fx", "prepared", 2, "fx"),
        "fx converted": ("fx", "converted", 3, "fx"),
        "exported": ("pt2e", None, 0, "fx"),
    }
    assert seen["dynamic"].dynamic_only and not any(f.qat for f in seen.values())
