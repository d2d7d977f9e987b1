"""Core rules QD001-QD006: unit tests on hand-built Facts (no model runs), then end to end over fixtures/.

Expected outputs are rule codes, module paths, lines and evidence counts; never timings.
"""

from __future__ import annotations

import json
import math
import platform

import pytest
from conftest import SCRIPTS, as_json, codes, run_check

from qdoctor import facts as F
from qdoctor.diagnose.registry import get_rule
from qdoctor.diagnose.rules.qd005_fp32_fallback import MATERIAL_SHARE
from qdoctor.facts import (
    CategoryTime,
    CrashInfo,
    Environment,
    Facts,
    ModuleInfo,
    ModuleTime,
    Numerics,
    Profile,
    QConfigInfo,
    Target,
    TensorInfo,
    Trace,
    TraceEvent,
)

X86_ISA = ["avx2", "avx512f", "avx512_vnni"]
FP32 = TensorInfo("torch.float32", [1, 8], False)
INT8 = TensorInfo("torch.quint8", [1, 8], True)
X86_QCONFIG = QConfigInfo(
    "HistogramObserver",
    "PerChannelMinMaxObserver",
    weight_qscheme="torch.per_channel_symmetric",
    reduce_range=True,
    backend_family="x86/fbgemm",
)
QNNPACK_QCONFIG = QConfigInfo(
    "HistogramObserver",
    "MinMaxObserver",
    weight_qscheme="torch.per_tensor_symmetric",
    reduce_range=False,
    backend_family="qnnpack",
)


# ------------------------------------------------------------------------------------------------ builders


def env(machine: str = "x86_64", engine: str = "x86", isa: list[str] | None = None) -> Environment:
    arm = machine == "aarch64"
    return Environment(
        torch_version="2.14.1",
        python_version="3.11",
        platform="linux",
        machine=machine,
        cpu_model="test cpu",
        cpu_isa=isa if isa is not None else (["asimd", "asimddp"] if arm else X86_ISA),
        cpu_capability="default",
        cpu_count=2,
        quantized_engine=engine,
        supported_engines=["qnnpack"] if arm else ["qnnpack", "onednn", "x86", "fbgemm"],
        num_threads=2,
        num_interop_threads=2,
        thread_env={},
    )


def mod(path: str, type_: str, kind: str, **kw) -> ModuleInfo:
    kw.setdefault("is_leaf", kind != F.CONTAINER)
    return ModuleInfo(path=path, type=type_, type_module="test", kind=kind, training=False, **kw)


def qconv(path: str, scale: float = 0.02, zp: int = 3, qscheme: str = "torch.per_channel_affine", type_="Conv2d"):
    return mod(path, type_, F.QUANTIZED, scale=scale, zero_point=zp, weight_dtype="torch.qint8", weight_qscheme=qscheme)


def ev(path: str, type_: str, inputs: list[TensorInfo], outputs: list[TensorInfo], kind: str = "module") -> TraceEvent:
    return TraceEvent(
        kind=kind,
        name=path,
        module=path if kind == "module" else "",
        type=type_ if kind == "module" else "function",
        inputs=inputs,
        outputs=outputs,
    )


def facts(
    modules: list[ModuleInfo],
    events: list[TraceEvent] | None = None,
    *,
    environment: Environment | None = None,
    output: list[TensorInfo] | None = None,
    crash: CrashInfo | None = None,
    script: str = "",
    warnings: list[str] | None = None,
    profile: Profile | None = None,
    float_modules: list[ModuleInfo] | None = None,
    sqnr: float | None = None,
) -> Facts:
    target = Target(
        spec="model.py",
        file="/src/model.py",
        subject_name="quantized_model",
        float_name="float_model",
        inputs_name="example_inputs",
        inputs=[FP32],
        script_text=script,
        warnings=warnings or [],
    )
    root = [] if any(m.path == "" for m in modules) else [mod("", "Net", F.CONTAINER)]
    return Facts(
        target=target,
        environment=environment or env(),
        modules=root + modules,
        float_modules=float_modules,
        trace=Trace(events=events or [], output=output if output is not None else [FP32], crash=crash)
        if events is not None or crash is not None
        else None,
        profile=profile,
        numerics=Numerics(sqnr_db=sqnr) if sqnr is not None else None,
    )


def profile(total_ms: float, modules: dict[str, float], float_ms: float = 0.0, qdq_ms: float = 0.0) -> Profile:
    cats = {F.CAT_FLOAT: float_ms, F.CAT_QDQ: qdq_ms}
    cats[F.CAT_INT8] = total_ms - float_ms - qdq_ms
    return Profile(
        runs=1,
        total_ms=total_ms,
        categories=[CategoryTime(c, cats.get(c, 0.0), cats.get(c, 0.0) / total_ms) for c in F.CATEGORIES],
        top_ops=[],
        modules=[ModuleTime(p, "", "", ms) for p, ms in modules.items()],
    )


def run(code: str, f: Facts):
    found = get_rule(code)
    assert found is not None
    return list(found.check(f))


def healthy_chain() -> tuple[list[ModuleInfo], list[TraceEvent]]:
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB, scale=0.05, zero_point=60),
        qconv("conv", type_="ConvReLU2d"),
        qconv("fc", type_="Linear"),
        mod("dequant", "DeQuantize", F.DEQUANT_STUB),
    ]
    events = [
        ev("quant", "Quantize", [FP32], [INT8]),
        ev("conv", "ConvReLU2d", [INT8], [INT8]),
        ev("fc", "Linear", [INT8], [INT8]),
        ev("dequant", "DeQuantize", [INT8], [FP32]),
    ]
    return modules, events


def test_a_healthy_converted_model_gets_no_core_finding():
    modules, events = healthy_chain()
    f = facts(modules, events, profile=profile(1.0, {"conv": 0.6, "fc": 0.2}, qdq_ms=0.05), sqnr=35.0)
    for code in ("QD001", "QD002", "QD003", "QD004", "QD005", "QD006"):
        assert run(code, f) == [], code


# ------------------------------------------------------------------------------------------------ QD001


def test_qd001_default_qparams_point_at_first_conv_with_sqnr():
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB, scale=1.0, zero_point=0),
        qconv("conv", scale=1.0, zp=0),
        qconv("fc", scale=1.0, zp=0, type_="Linear"),
    ]
    events = [
        ev("quant", "Quantize", [FP32], [INT8]),
        ev("conv", "Conv2d", [INT8], [INT8]),
        ev("fc", "Linear", [INT8], [INT8]),
    ]
    found = run("QD001", facts(modules, events, sqnr=-0.3))
    assert len(found) == 1
    finding = found[0]
    assert finding.severity.value == "error"
    assert finding.location.module == "conv"  # not the QuantStub
    assert finding.evidence["modules_with_default_qparams"] == ["quant", "conv", "fc"]
    assert finding.evidence["sqnr_db"] == -0.3
    assert "SQNR -0.3 dB" in finding.message and "all 3" in finding.message
    assert "convert(prepared)" in finding.fix and "prepared(*batch)" in finding.fix


def test_qd001_partial_calibration_names_only_the_idle_modules():
    modules = [qconv("a"), qconv("b", scale=1.0, zp=0), qconv("c")]
    found = run("QD001", facts(modules))
    assert [f.location.module for f in found] == ["b"]
    assert "1 of 3" in found[0].message


def test_qd001_calibrated_scale_of_one_with_nonzero_zero_point_is_not_flagged():
    assert run("QD001", facts([qconv("a", scale=1.0, zp=5)])) == []


def test_qd001_observers_never_run_in_a_prepared_model_warn_at_their_owner():
    modules = [
        mod("conv", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG, has_observer_attached=True),
        mod(
            "conv.activation_post_process",
            "HistogramObserver",
            F.OBSERVER,
            observed_min=math.inf,
            observed_max=-math.inf,
        ),
    ]
    found = run("QD001", facts(modules))
    assert len(found) == 1
    assert found[0].severity.value == "warning"
    assert found[0].location.module == "conv"
    assert "quantized_model(*batch)" in found[0].fix  # calibrate the prepared subject itself


def test_qd001_counts_a_fake_quant_once_not_with_its_inner_observer():
    modules = [
        mod("conv", "Conv2d", F.QAT),
        mod(
            "conv.activation_post_process", "FakeQuantize", F.FAKE_QUANT, observed_min=math.inf, observed_max=-math.inf
        ),
        mod(
            "conv.activation_post_process.activation_post_process",
            "MovingAverageMinMaxObserver",
            F.OBSERVER,
            observed_min=math.inf,
            observed_max=-math.inf,
        ),
    ]
    found = run("QD001", facts(modules))
    assert found[0].evidence["observers_never_run"] == ["conv.activation_post_process"]


def test_qd001_torch_warning_counts_only_when_no_int8_module_can_be_checked():
    warning = "UserWarning: must run observer before calling calculate_qparams. Returning default scale and zero point"
    dynamic = [mod("fc", "Linear", F.DYNAMIC_QUANTIZED, weight_dtype="torch.qint8")]
    found = run("QD001", facts(dynamic, warnings=[warning]))
    assert len(found) == 1 and found[0].location.module is None
    assert run("QD001", facts(dynamic, warnings=["UserWarning: something else"])) == []
    # Calibrated int8 modules: the warning came from an observer that never runs (MobileNetV2's unused skip_add).
    assert run("QD001", facts([qconv("a")], warnings=[warning])) == []


def test_qd001_ignores_modules_that_never_run_and_float_functionals():
    modules = [
        qconv("backbone"),
        qconv("aux_head", scale=1.0, zp=0),
        mod("skip_add", "QFunctional", F.FLOAT_FUNCTIONAL, scale=1.0, zero_point=0),
    ]
    events = [ev("backbone", "Conv2d", [INT8], [INT8])]
    assert run("QD001", facts(modules, events)) == []
    unused_observer = [
        mod("aux", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG, has_observer_attached=True),
        mod(
            "aux.activation_post_process",
            "HistogramObserver",
            F.OBSERVER,
            observed_min=math.inf,
            observed_max=-math.inf,
        ),
    ]
    assert run("QD001", facts(unused_observer, [ev("stem", "Conv2d", [FP32], [FP32])])) == []


def test_qd001_fix_for_an_fx_graph_module_uses_convert_fx():
    modules = [mod("", "GraphModule", F.CONTAINER), qconv("conv", scale=1.0, zp=0)]
    (finding,) = run("QD001", facts(modules))
    assert "prepare_fx" in finding.fix and "convert_fx(prepared)" in finding.fix


# ------------------------------------------------------------------------------------------------ QD002


def test_qd002_float_into_int8_module_without_quant_stub():
    modules = [qconv("0"), mod("1", "ReLU", F.FLOAT)]
    crash = CrashInfo(
        "NotImplementedError",
        "Could not run 'quantized::conv2d.new' with arguments from the 'CPU' backend.",
        "run",
        module="0",
    )
    (finding,) = run("QD002", facts(modules, [ev("0", "Conv2d", [FP32], [])], crash=crash, output=[]))
    assert finding.location.module == "0"
    assert "raises here" in finding.message
    assert "QuantWrapper(float_model)" in finding.fix


def test_qd002_names_a_quant_stub_that_convert_skipped():
    modules = [mod("quant", "QuantStub", F.QUANT_STUB), qconv("conv"), mod("dequant", "DeQuantize", F.DEQUANT_STUB)]
    events = [ev("quant", "QuantStub", [FP32], [FP32]), ev("conv", "Conv2d", [FP32], [])]
    (finding,) = run("QD002", facts(modules, events, output=[]))
    assert finding.location.module == "conv"
    assert "`quant` is still a no-op" in finding.message
    assert "float_model.quant.qconfig" in finding.fix


def test_qd002_int8_into_float_module_crash_asks_for_a_dequant_stub():
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3),
        qconv("conv"),
        mod("norm", "LocalResponseNorm", F.FLOAT),
    ]
    events = [
        ev("quant", "Quantize", [FP32], [INT8]),
        ev("conv", "Conv2d", [INT8], [INT8]),
        ev("norm", "LocalResponseNorm", [INT8], []),
    ]
    crash = CrashInfo(
        "NotImplementedError",
        "Could not run 'aten::pow.Tensor_Scalar' with arguments from the 'QuantizedCPU' backend.",
        "run",
        module="norm",
    )
    (finding,) = run("QD002", facts(modules, events, crash=crash, output=[]))
    assert finding.location.module == "norm"
    assert "DeQuantStub" in finding.message and "dequant_before" in finding.fix


def test_qd002_leaves_function_level_crashes_to_qd011():
    modules = [mod("quant", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3), qconv("conv")]
    events = [
        ev("quant", "Quantize", [FP32], [INT8]),
        ev("conv", "Conv2d", [INT8], [INT8]),
        ev("add", "function", [INT8, INT8], [], kind="function"),
    ]
    crash = CrashInfo(
        "NotImplementedError",
        "Could not run 'aten::add.Tensor' with arguments from the 'QuantizedCPU' backend.",
        "run",
        module="",
    )
    assert run("QD002", facts(modules, events, crash=crash, output=[])) == []


def test_qd002_int8_output_without_dequant_stub():
    modules = [mod("quant", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3), qconv("conv")]
    events = [ev("quant", "Quantize", [FP32], [INT8]), ev("conv", "Conv2d", [INT8], [INT8])]
    (finding,) = run("QD002", facts(modules, events, output=[INT8]))
    assert finding.location.module == "conv"
    assert "returns an int8" in finding.message


def test_qd002_fix_names_the_engine_for_this_cpu_not_the_one_in_use():
    modules = [qconv("0")]
    f = facts(modules, [ev("0", "Conv2d", [FP32], [])], environment=env(engine="qnnpack"), output=[])
    (finding,) = run("QD002", f)
    assert 'get_default_qconfig("x86")' in finding.fix and "qnnpack" not in finding.fix
    arm = facts(modules, [ev("0", "Conv2d", [FP32], [])], environment=env("aarch64", engine="qnnpack"), output=[])
    assert 'get_default_qconfig("qnnpack")' in run("QD002", arm)[0].fix


# ------------------------------------------------------------------------------------------------ QD003

QNNPACK_SCRIPT = 'import torch\ntorch.backends.quantized.engine = "qnnpack"\nqc = get_default_qconfig("qnnpack")\n'


def test_qd003_qnnpack_engine_on_x86_points_at_the_engine_line_and_recommends_x86():
    modules = [qconv("conv", qscheme="torch.per_tensor_affine")]
    (finding,) = run("QD003", facts(modules, environment=env(engine="qnnpack"), script=QNNPACK_SCRIPT))
    assert finding.severity.value == "warning"
    assert finding.location.line == 2 and finding.location.module == "conv"
    assert finding.evidence["recommended_engine"] == "x86"
    assert 'engine = "x86"' in finding.fix and 'get_default_qconfig("x86")' in finding.fix
    assert "qnnpack" not in finding.fix


def test_qd003_x86_engine_on_arm_recommends_qnnpack():
    (finding,) = run("QD003", facts([qconv("conv")], environment=env("aarch64", engine="fbgemm")))
    assert finding.evidence["recommended_engine"] == "qnnpack"
    assert 'engine = "qnnpack"' in finding.fix


def test_qd003_qnnpack_qconfig_on_x86_engine_from_module_qconfig():
    modules = [mod("conv", "Conv2d", F.FLOAT, qconfig=QNNPACK_QCONFIG, has_observer_attached=True)]
    (finding,) = run("QD003", facts(modules))
    assert finding.evidence["qconfig_family"] == "qnnpack"
    assert finding.severity.value == "info"  # this CPU has VNNI: measured no slower, no less accurate
    assert "harmless" in finding.message and "without VNNI" in finding.message
    assert 'get_default_qconfig("onednn")' in finding.fix  # the VNNI-only alternative, as a comment
    (no_vnni,) = run("QD003", facts(modules, environment=env(isa=["avx2"])))
    assert no_vnni.severity.value == "warning"
    assert "this CPU has no VNNI" in no_vnni.message


def test_qd003_converted_per_tensor_weights_need_a_second_sign_of_qnnpack():
    per_tensor = [qconv("conv", qscheme="torch.per_tensor_affine"), qconv("fc", qscheme="torch.per_tensor_affine")]
    # torch.ao.quantization.default_qconfig (per-tensor, reduce_range) is no backend's default: no finding.
    assert run("QD003", facts(per_tensor)) == []
    scripted = run("QD003", facts(per_tensor, script="m.qconfig = tq.get_default_qconfig('qnnpack')\n"))
    assert scripted[0].evidence["qconfig_family"] == "qnnpack" and scripted[0].location.line == 1
    full_range = [qconv("conv", qscheme="torch.per_tensor_affine", zp=140)]
    assert run("QD003", facts(full_range))[0].evidence["qconfig_family"] == "qnnpack"


def test_qd003_crash_without_an_engine_is_an_error():
    crash = CrashInfo("RuntimeError", "Didn't find engine for operation quantized::conv2d_prepack NoQEngine", "load")
    (finding,) = run(
        "QD003",
        facts([mod("conv", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG)], crash=crash, environment=env(engine="none")),
    )
    assert finding.severity.value == "error"
    assert "quantized::conv2d_prepack" in finding.message
    assert 'engine = "x86"' in finding.fix
    unsupported = CrashInfo("RuntimeError", "quantized engine FBGEMM is not supported", "load")
    arm = run("QD003", facts([qconv("conv")], crash=unsupported, environment=env("aarch64", engine="qnnpack")))
    assert arm[0].severity.value == "error" and 'engine = "qnnpack"' in arm[0].fix


def test_qd003_x86_qconfig_under_qnnpack_on_arm_is_info_and_onednn_pairs_are_quiet():
    x86_prepared = [mod("conv", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG, has_observer_attached=True)]
    (finding,) = run("QD003", facts(x86_prepared, environment=env("aarch64", engine="qnnpack")))
    assert finding.severity.value == "info" and "one bit" in finding.message
    assert 'get_default_qconfig("qnnpack")' in finding.fix
    qnnpack_prepared = [mod("conv", "Conv2d", F.FLOAT, qconfig=QNNPACK_QCONFIG, has_observer_attached=True)]
    assert run("QD003", facts(qnnpack_prepared, environment=env(engine="onednn"))) == []


def test_qd003_matching_engine_and_qconfig_is_quiet():
    modules = [mod("conv", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG, has_observer_attached=True)]
    assert run("QD003", facts(modules)) == []
    arm = [mod("conv", "Conv2d", F.FLOAT, qconfig=QNNPACK_QCONFIG, has_observer_attached=True)]
    assert run("QD003", facts(arm, environment=env("aarch64", engine="qnnpack"))) == []


# ------------------------------------------------------------------------------------------------ QD004


def _conv_relu_chain(relu_calls: int = 1, conv=None):
    conv = conv or qconv("features.0")
    modules = [conv, mod("features.1", "ReLU", F.FLOAT), qconv("fc", type_="Linear")]
    events = [ev(conv.path, conv.type, [INT8], [INT8])] + [ev("features.1", "ReLU", [INT8], [INT8])] * relu_calls
    return modules, events + [ev("fc", "Linear", [INT8], [INT8])]


def test_qd004_converted_conv_followed_by_relu_gives_the_fuse_modules_call():
    modules, events = _conv_relu_chain()
    (finding,) = run("QD004", facts(modules, events))
    assert finding.location.module == "features.0"
    assert finding.evidence["groups"] == [["features.0", "features.1"]]
    assert "torch.ao.quantization.fuse_modules(\n    float_model.eval()," in finding.fix
    assert '["features.0", "features.1"]' in finding.fix


def test_qd004_refuses_a_relu_that_runs_twice():
    modules, events = _conv_relu_chain(relu_calls=2)
    assert run("QD004", facts(modules, events)) == []


def test_qd004_already_fused_and_never_quantized_layers_are_quiet():
    fused = [qconv("c", type_="ConvReLU2d"), mod("r", "Identity", F.FLOAT)]
    assert (
        run("QD004", facts(fused, [ev("c", "ConvReLU2d", [INT8], [INT8]), ev("r", "Identity", [INT8], [INT8])])) == []
    )
    floats = [mod("c", "Conv2d", F.FLOAT), mod("r", "ReLU", F.FLOAT), qconv("fc", type_="Linear")]
    events = [ev("c", "Conv2d", [FP32], [FP32]), ev("r", "ReLU", [FP32], [FP32])]
    assert run("QD004", facts(floats, events)) == []  # a float layer kept out of quantization on purpose


def test_qd004_after_a_crash_reads_nn_sequential_order_and_stops_at_gaps():
    modules = [
        mod("", "Sequential", F.CONTAINER),
        qconv("0"),
        mod("1", "ReLU", F.FLOAT),
        mod("2", "MaxPool2d", F.FLOAT),
        qconv("3"),
        mod("4", "ReLU", F.FLOAT),
        qconv("6"),
        mod("7", "ReLU", F.FLOAT),  # "5" missing: a module shared with an earlier index
    ]
    crash = CrashInfo(
        "NotImplementedError", "Could not run 'quantized::conv2d.new' with arguments from the 'CPU'", "run", module="0"
    )
    (finding,) = run("QD004", facts(modules, [ev("0", "Conv2d", [FP32], [])], crash=crash, output=[]))
    assert finding.evidence["groups"] == [["0", "1"], ["3", "4"], ["6", "7"]]
    # Sequential(conv_a, relu, conv_b, relu): the last ReLU is the first one again, so named_modules() lists it once
    # (at "1", also at "3") and no gap shows. Fusing it into conv_a would remove it from after conv_b.
    shared = [mod("", "Sequential", F.CONTAINER), qconv("0"), mod("1", "ReLU", F.FLOAT, also_at=["3"]), qconv("2")]
    assert run("QD004", facts(shared, [], crash=crash, output=[])) == []


def test_qd004_qat_uses_fuse_modules_qat_and_wrapper_paths_map_to_the_float_model():
    modules = [
        mod("module.0", "Conv2d", F.QAT),
        mod("module.1", "ReLU", F.FLOAT, qconfig=X86_QCONFIG),
        mod("module.0.weight_fake_quant", "FakeQuantize", F.FAKE_QUANT),
    ]
    events = [ev("module.0", "Conv2d", [FP32], [FP32]), ev("module.1", "ReLU", [FP32], [FP32])]
    float_modules = [mod("", "Sequential", F.CONTAINER), mod("0", "Conv2d", F.FLOAT), mod("1", "ReLU", F.FLOAT)]
    (finding,) = run("QD004", facts(modules, events, float_modules=float_modules))
    assert "fuse_modules_qat(\n    float_model.train()," in finding.fix
    assert '["0", "1"]' in finding.fix


def test_qd004_skips_fx_graph_modules():
    modules, events = _conv_relu_chain()
    assert run("QD004", facts([mod("", "GraphModule", F.CONTAINER), *modules], events)) == []


# ------------------------------------------------------------------------------------------------ QD005


def _fallback_trace():
    modules = [
        mod("quant", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3),
        qconv("stem"),
        mod("to_float", "DeQuantize", F.DEQUANT_STUB),
        mod("mid", "Conv2d", F.FLOAT),
        mod("act", "SiLU", F.FLOAT),
        mod("to_int8", "Quantize", F.QUANT_STUB, scale=0.1, zero_point=3),
        qconv("block"),
        mod("dequant", "DeQuantize", F.DEQUANT_STUB),
        mod("head", "Softmax", F.FLOAT),
    ]
    events = [
        ev("quant", "Quantize", [FP32], [INT8]),
        ev("stem", "Conv2d", [INT8], [INT8]),
        ev("to_float", "DeQuantize", [INT8], [FP32]),
        ev("mid", "Conv2d", [FP32], [FP32]),
        ev("view", "function", [FP32], [FP32], kind="function"),
        ev("act", "SiLU", [FP32], [FP32]),
        ev("to_int8", "Quantize", [FP32], [INT8]),
        ev("block", "Conv2d", [INT8], [INT8]),
        ev("dequant", "DeQuantize", [INT8], [FP32]),
        ev("head", "Softmax", [FP32], [FP32]),  # the float tail: a boundary, not a fallback
    ]
    return modules, events


def test_qd005_names_the_float_modules_between_int8_regions_and_their_share():
    modules, events = _fallback_trace()
    prof = profile(
        10.0, {"to_float": 0.2, "mid": 2.0, "act": 0.5, "to_int8": 0.3, "head": 1.0}, float_ms=3.5, qdq_ms=0.8
    )
    (finding,) = run("QD005", facts(modules, events, profile=prof))
    assert finding.severity.value == "warning"
    assert finding.location.module == "mid"
    assert finding.evidence["round_trips"] == 1
    assert finding.evidence["float_modules"] == ["mid", "act"]  # not the view, not the float tail
    assert finding.evidence["fallback_share"] == pytest.approx(0.3)
    assert 'float_model.mid.qconfig = torch.ao.quantization.get_default_qconfig("x86")' in finding.fix
    assert "act" in finding.fix and "no eager-mode int8 kernel" in finding.fix


def test_qd005_a_small_share_is_info_and_no_profile_is_info():
    modules, events = _fallback_trace()
    small = profile(100.0, {"to_float": 0.2, "mid": 2.0, "act": 0.5, "to_int8": 0.3}, float_ms=2.5, qdq_ms=0.5)
    assert (2.0 + 0.5 + 0.2 + 0.3) / 100.0 < MATERIAL_SHARE
    assert run("QD005", facts(modules, events, profile=small))[0].severity.value == "info"
    assert run("QD005", facts(modules, events))[0].severity.value == "info"


def test_qd005_model_boundaries_are_not_round_trips():
    modules, events = healthy_chain()
    head = [ev("normalize", "function", [FP32], [FP32], kind="function")]
    tail = [ev("softmax", "function", [FP32], [FP32], kind="function")]
    assert run("QD005", facts(modules, head + events + tail)) == []


def test_qd005_leaves_hand_made_float_adds_to_qd011():
    modules, events = healthy_chain()
    trip = [
        ev("dequantize", "function", [INT8], [FP32], kind="function"),
        ev("Tensor.__add__", "function", [FP32, FP32], [FP32], kind="function"),
        ev("quantize_per_tensor", "function", [FP32], [INT8], kind="function"),
    ]
    assert run("QD005", facts(modules, events[:2] + trip + events[2:])) == []


def test_qd005_counts_function_fallbacks_through_the_profile_categories():
    modules, events = healthy_chain()
    trip = [
        ev("Tensor.dequantize", "function", [INT8], [FP32], kind="function"),
        ev("sigmoid", "function", [FP32], [FP32], kind="function"),
        ev("quantize_per_tensor", "function", [FP32], [INT8], kind="function"),
    ]
    prof = profile(10.0, {"quant": 0.3, "dequant": 0.2, "conv": 5.0}, float_ms=2.0, qdq_ms=1.5)
    (finding,) = run("QD005", facts(modules, events[:2] + trip + events[2:], profile=prof))
    assert finding.evidence["float_functions"] == ["sigmoid()"]
    # all float time is the sigmoid's; the quantize/dequantize time left after the stub modules is the trip's
    assert finding.evidence["fallback_share"] == pytest.approx((2.0 + 1.5 - 0.5) / 10.0)


def test_qd005_reshape_only_round_trip_in_fx_is_weighed_by_tensor_size():
    image, vector = TensorInfo("torch.float32", [1, 3, 32, 32], False), TensorInfo("torch.float32", [1, 16], False)
    q_image, q_vector = TensorInfo("torch.quint8", [1, 3, 32, 32], True), TensorInfo("torch.quint8", [1, 16], True)
    modules = [mod("", "GraphModule", F.CONTAINER), qconv("conv"), qconv("fc", type_="Linear")]
    events = [
        ev("quantize_per_tensor", "function", [image], [q_image], kind="function"),
        ev("conv", "Conv2d", [q_image], [q_vector]),
        ev("Tensor.dequantize", "function", [q_vector], [vector], kind="function"),
        ev("Tensor.flatten", "function", [vector], [vector], kind="function"),
        ev("quantize_per_tensor", "function", [vector], [q_vector], kind="function"),
        ev("fc", "Linear", [q_vector], [q_vector]),
        ev("Tensor.dequantize", "function", [q_vector], [vector], kind="function"),
    ]
    prof = profile(10.0, {"conv": 6.0, "fc": 1.0}, qdq_ms=3.0)
    (finding,) = run("QD005", facts(modules, events, profile=prof))
    assert finding.evidence["reshapes_only"] is True
    assert "`Tensor.flatten()`" in finding.message
    assert finding.severity.value == "info"  # 32 of 3136 quantized/dequantized elements are the round trip's
    assert finding.evidence["fallback_share"] == pytest.approx(3.0 * 32 / (3072 + 16 + 16 + 16) / 10.0, abs=1e-3)
    assert "torch.flatten(x, 1)" in finding.fix


# ------------------------------------------------------------------------------------------------ QD006


def test_qd006_fx_prepared_graph_module_points_at_the_first_float_layer():
    modules = [
        mod("", "GraphModule", F.CONTAINER),
        mod("activation_post_process_0", "HistogramObserver", F.OBSERVER, observed_min=-1.0, observed_max=1.0),
        mod("conv1", "ConvReLU2d", F.FLOAT, is_leaf=False, qconfig=X86_QCONFIG),
        mod("conv1.0", "Conv2d", F.FLOAT, qconfig=X86_QCONFIG),
        mod("conv1.1", "ReLU", F.FLOAT, qconfig=X86_QCONFIG),
        mod("activation_post_process_1", "HistogramObserver", F.OBSERVER, observed_min=0.0, observed_max=2.0),
    ]
    events = [
        ev("activation_post_process_0", "HistogramObserver", [FP32], [FP32]),
        ev("conv1.0", "Conv2d", [FP32], [FP32]),
        ev("conv1.1", "ReLU", [FP32], [FP32]),
        ev("activation_post_process_1", "HistogramObserver", [FP32], [FP32]),
    ]
    (finding,) = run("QD006", facts(modules, events))
    assert finding.location.module == "conv1"
    assert finding.evidence["flow"] == "FX prepare_fx" and finding.evidence["observers"] == 2
    assert "quantized_model = convert_fx(quantized_model)" in finding.fix


def test_qd006_eager_qat_counts_fake_quant_and_disables_observers_in_the_fix():
    modules = [
        mod("0", "QuantStub", F.QUANT_STUB),
        mod(
            "0.activation_post_process",
            "FusedMovingAvgObsFakeQuantize",
            F.FAKE_QUANT,
            observed_min=-1.0,
            observed_max=1.0,
        ),
        mod(
            "0.activation_post_process.activation_post_process",
            "MovingAverageMinMaxObserver",
            F.OBSERVER,
            observed_min=-1.0,
            observed_max=1.0,
        ),
        mod("1", "ConvBnReLU2d", F.QAT, is_leaf=False),
        mod("1.bn", "BatchNorm2d", F.FLOAT),
        mod("1.weight_fake_quant", "FusedMovingAvgObsFakeQuantize", F.FAKE_QUANT, observed_min=-1.0, observed_max=1.0),
    ]
    events = [ev("0", "QuantStub", [FP32], [FP32]), ev("1.bn", "BatchNorm2d", [FP32], [FP32])]
    (finding,) = run("QD006", facts(modules, events))
    assert finding.location.module == "1"
    assert finding.evidence["flow"] == "eager QAT (prepare_qat)"
    assert finding.evidence["observers"] == 0  # the fake-quants' own observers are not counted twice
    assert "disable_observer" in finding.fix


def test_qd006_quiet_on_a_converted_model():
    modules, events = healthy_chain()
    assert run("QD006", facts(modules, events)) == []


# ------------------------------------------------------------------------------------------------ end to end


def _by_rule(report, code):
    return [f for f in report.findings if f.rule == code]


def test_seed004_as_written_reports_uncalibrated_missing_stubs_and_unfused(check_fixture):
    report = check_fixture("seed004_as_written.py")
    assert {"QD001", "QD002", "QD004"} <= set(codes(report))
    (qd001,) = _by_rule(report, "QD001")
    assert qd001.location.module == "0" and qd001.location.line == 10
    assert qd001.evidence["modules_with_default_qparams"] == ["0", "3", "7"]
    assert qd001.evidence["torch_warning"]
    (qd004,) = _by_rule(report, "QD004")
    assert qd004.evidence["groups"] == [["0", "1"], ["3", "4"]]


ON_X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.skipif(not ON_X86, reason="on ARM a qnnpack qconfig is the right one")
def test_seed004_proposed_fix_reports_stub_backend_and_calibration_without_repeating_qnnpack(check_fixture):
    report = check_fixture("seed004_proposed_fix.py")
    assert {"QD001", "QD002", "QD003"} <= set(codes(report))
    (qd003,) = _by_rule(report, "QD003")
    assert qd003.location.module == "0" and qd003.location.line == 23  # the get_default_qconfig('qnnpack') line
    assert qd003.evidence["qconfig_family"] == "qnnpack"
    assert _by_rule(report, "QD002")[0].location.module == "0"
    assert _by_rule(report, "QD001")[0].location.line == 11  # nn.Conv2d(...) in the script
    fixes = "\n".join(f.fix for f in report.findings)
    assert "qnnpack" not in fixes  # never the seed's advice again
    assert 'get_default_qconfig("x86")' in fixes
    messages = json.dumps([f["message"] for f in as_json(report)["findings"]])
    assert "use `qnnpack`" not in messages and "`x86`" in messages


def test_healthy_control_stays_clean_under_the_core_rules(check_fixture):
    assert check_fixture("healthy_static.py").findings == []


def test_torchvision_resnet18_without_fuse_model_reports_every_conv_bn_group(check_fixture):
    report = check_fixture("tv_resnet18_unfused.py")
    assert codes(report) == ["QD004"]
    (qd004,) = report.findings
    groups = qd004.evidence["groups"]
    assert groups[0] == ["conv1", "bn1", "relu"]
    assert ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu"] in groups
    assert ["layer2.0.downsample.0", "layer2.0.downsample.1"] in groups
    assert len(groups) == 20  # 1 stem + 8 blocks x 2 + 3 downsamples
    assert "fuse_model()" in qd004.fix


def test_plain_triage_script_uncalibrated_shows_sqnr(check_fixture):
    report = check_fixture("triage_uncalibrated.py")
    assert codes(report) == ["QD001"]
    (qd001,) = report.findings
    assert qd001.location.module == "c1"
    assert qd001.location.line == 12
    assert qd001.evidence["sqnr_db"] is not None and qd001.evidence["sqnr_db"] < 10
    assert "int8_net = torch.ao.quantization.convert(prepared)" in qd001.fix


@pytest.mark.skipif(not ON_X86, reason="qnnpack is the right engine on ARM")
def test_qnnpack_engine_on_x86(check_fixture):
    report = check_fixture("qnnpack_engine_on_x86.py")
    assert codes(report) == ["QD003"]
    (qd003,) = report.findings
    assert qd003.location.line == 7 and qd003.location.module == "conv1"
    assert qd003.evidence["engine"] == "qnnpack" and qd003.evidence["recommended_engine"] == "x86"
    assert 'torch.backends.quantized.engine = "x86"' in qd003.fix


def test_fp32_fallback_counts_round_trips_and_names_float_modules(check_fixture):
    report = check_fixture("fp32_fallback.py")
    assert codes(report) == ["QD005"]
    (qd005,) = report.findings
    assert qd005.location.module == "mid"
    assert qd005.evidence["round_trips"] == 2
    assert qd005.evidence["float_modules"] == ["mid", "mid_act", "gate"]
    assert qd005.evidence["transitions"] == ["to_float -> to_int8", "to_float2 -> to_int8_2"]
    assert "fallback_share" in qd005.evidence


def test_unfused_mlp_skips_the_shared_relu(check_fixture):
    report = check_fixture("unfused_mlp_shared_relu.py")
    assert codes(report) == ["QD004"]
    (qd004,) = report.findings
    assert qd004.evidence["groups"] == [["bn", "bn_relu"], ["fc1", "fc1_relu"]]
    assert qd004.location.module == "bn" and qd004.location.line == 15


def test_qat_model_left_with_fake_quant(check_fixture):
    report = check_fixture("qat_not_converted.py")
    assert codes(report) == ["QD006"]
    (qd006,) = report.findings
    assert qd006.location.module == "1"
    assert qd006.evidence["flow"] == "eager QAT (prepare_qat)"
    assert "qat_model = torch.ao.quantization.convert(qat_model)" in qd006.fix


def test_fx_prepared_model_left_with_observers(check_fixture):
    report = check_fixture("fx_prepared_not_converted.py")
    assert codes(report) == ["QD006"]
    (qd006,) = report.findings
    assert qd006.location.module == "conv1"
    assert qd006.evidence["flow"] == "FX prepare_fx"
    assert qd006.evidence["observers"] >= 4
    assert "prepared = convert_fx(prepared)" in qd006.fix


def test_float_model_never_quantized_gets_no_core_finding():
    report = run_check(SCRIPTS / "float_only.py", profile=False)
    assert report.findings == []
    assert any("not quantized" in note for note in report.notes)
