"""QD004 unfused-modules: unit tests on hand-built Facts, then end to end over its fixtures."""

from __future__ import annotations

import pytest
from conftest import codes, findings_of
from factsbuild import X86_QCONFIG, f32, fev, healthy_facts, make_facts, mev, mod, q, qconv, run_rule

from qdoctor import facts as F
from qdoctor.facts import CrashInfo

FIXTURES = [
    "fixtures/tv_resnet18_unfused.py",
    "fixtures/unfused_mlp_shared_relu.py",
    "fixtures/seed004_as_written.py",
    "fixtures/standin_checkpoint.py",
]


def _conv_relu_chain(relu_calls: int = 1, conv=None):
    conv = conv or qconv("features.0")
    modules = [conv, mod("features.1", "ReLU", F.FLOAT), qconv("fc", type_="Linear")]
    events = [mev(conv.path, conv.type, [q()], [q()])] + [mev("features.1", "ReLU", [q()], [q()])] * relu_calls
    return modules, events + [mev("fc", "Linear", [q()], [q()])]


def test_qd004_quiet_on_a_healthy_converted_model():
    assert run_rule("QD004", healthy_facts()) == []


def test_qd004_converted_conv_followed_by_relu_gives_the_fuse_modules_call():
    modules, events = _conv_relu_chain()
    (finding,) = run_rule("QD004", make_facts(modules, events))
    assert finding.location.module == "features.0"
    assert finding.evidence["groups"] == [["features.0", "features.1"]]
    assert "torch.ao.quantization.fuse_modules(\n    float_model.eval()," in finding.fix
    assert '["features.0", "features.1"]' in finding.fix


def test_qd004_refuses_a_relu_that_runs_twice():
    modules, events = _conv_relu_chain(relu_calls=2)
    assert run_rule("QD004", make_facts(modules, events)) == []


def test_qd004_a_relu_after_a_residual_add_is_not_the_convs_relu():
    """A residual block's conv2 -> (bn2) -> add -> relu: the ReLU takes the sum, not the conv's output, so fusing
    conv2 with it would move the ReLU before the add (matrix cell residual_cnn-none: a healthy recipe got QD004)."""
    modules = [qconv("block.conv2"), mod("block.relu2", "ReLU", F.QUANTIZED), qconv("fc", type_="Linear")]
    for add in ("quantized::add", "add", "Tensor.__add__", "cat"):  # FloatFunctional after convert, plain + or cat
        events = [
            mev("block.conv2", "Conv2d", [q()], [q()]),
            fev(add, "block", [q(), q()], [q()]),
            mev("block.relu2", "ReLU", [q()], [q()]),
            mev("fc", "Linear", [q()], [q()]),
        ]
        assert run_rule("QD004", make_facts(modules, events)) == [], add
    # a layout-only call in between keeps the pair fusable
    events = [
        mev("block.conv2", "Conv2d", [q()], [q()]),
        fev("Tensor.contiguous", "block", [q()], [q()]),
        mev("block.relu2", "ReLU", [q()], [q()]),
    ]
    (finding,) = run_rule("QD004", make_facts(modules, events))
    assert finding.evidence["groups"] == [["block.conv2", "block.relu2"]]


def test_qd004_already_fused_and_never_quantized_layers_are_quiet():
    fused = [qconv("c", type_="ConvReLU2d"), mod("r", "Identity", F.FLOAT)]
    fused_events = [mev("c", "ConvReLU2d", [q()], [q()]), mev("r", "Identity", [q()], [q()])]
    assert run_rule("QD004", make_facts(fused, fused_events)) == []
    floats = [mod("c", "Conv2d", F.FLOAT), mod("r", "ReLU", F.FLOAT), qconv("fc", type_="Linear")]
    events = [mev("c", "Conv2d", [f32()], [f32()]), mev("r", "ReLU", [f32()], [f32()])]
    assert run_rule("QD004", make_facts(floats, events)) == []  # a float layer kept out of quantization on purpose


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
    (finding,) = run_rule("QD004", make_facts(modules, [mev("0", "Conv2d", [f32()], [])], crash=crash, output=[]))
    assert finding.location.module == "0"
    assert finding.evidence["groups"] == [["0", "1"], ["3", "4"], ["6", "7"]]
    # Sequential(conv_a, relu, conv_b, relu): the last ReLU is the first one again, so named_modules() lists it once
    # (at "1", also at "3") and no gap shows. Fusing it into conv_a would remove it from after conv_b.
    shared = [mod("", "Sequential", F.CONTAINER), qconv("0"), mod("1", "ReLU", F.FLOAT, also_at=["3"]), qconv("2")]
    assert run_rule("QD004", make_facts(shared, [], crash=crash, output=[])) == []


def test_qd004_qat_uses_fuse_modules_qat_and_wrapper_paths_map_to_the_float_model():
    modules = [
        mod("module.0", "Conv2d", F.QAT),
        mod("module.1", "ReLU", F.FLOAT, qconfig=X86_QCONFIG),
        mod("module.0.weight_fake_quant", "FakeQuantize", F.FAKE_QUANT),
    ]
    events = [mev("module.0", "Conv2d", [f32()], [f32()]), mev("module.1", "ReLU", [f32()], [f32()])]
    float_modules = [mod("", "Sequential", F.CONTAINER), mod("0", "Conv2d", F.FLOAT), mod("1", "ReLU", F.FLOAT)]
    (finding,) = run_rule("QD004", make_facts(modules, events, float_modules=float_modules))
    assert finding.location.module == "module.0"
    assert "fuse_modules_qat(\n    float_model.train()," in finding.fix
    assert '["0", "1"]' in finding.fix


def test_qd004_skips_fx_graph_modules():
    modules, events = _conv_relu_chain()
    assert run_rule("QD004", make_facts([mod("", "GraphModule", F.CONTAINER), *modules], events)) == []


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_reports_qd004(check_fixture, fixture):
    assert "QD004" in codes(check_fixture(fixture))


def test_torchvision_resnet18_without_fuse_model_reports_every_conv_bn_group(check_fixture):
    report = check_fixture("fixtures/tv_resnet18_unfused.py")
    assert codes(report) == ["QD004"]
    (qd004,) = report.findings
    assert qd004.location.module == "conv1"
    groups = qd004.evidence["groups"]
    assert groups[0] == ["conv1", "bn1", "relu"]
    assert ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu"] in groups
    assert ["layer2.0.downsample.0", "layer2.0.downsample.1"] in groups
    assert len(groups) == 20  # 1 stem + 8 blocks x 2 + 3 downsamples
    assert "fuse_model()" in qd004.fix


def test_unfused_mlp_skips_the_shared_relu(check_fixture):
    report = check_fixture("fixtures/unfused_mlp_shared_relu.py")
    assert codes(report) == ["QD004"]
    (qd004,) = report.findings
    assert qd004.evidence["groups"] == [["bn", "bn_relu"], ["fc1", "fc1_relu"]]
    assert qd004.location.module == "bn" and qd004.location.line == 15


def test_seed004_as_written_groups_conv_and_relu(check_fixture):
    (qd004,) = findings_of(check_fixture("fixtures/seed004_as_written.py"), "QD004")
    assert qd004.evidence["groups"] == [["0", "1"], ["3", "4"]]
