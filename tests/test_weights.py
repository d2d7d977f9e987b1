"""Untrained weights (issue 23): the `weights` fact on hand-built modules, the verdicts it withholds (QD020, QD021,
compare's "too lossy"), what still holds (QD022 where its harm shows, speed), the header note in every format, and
the fixtures that reproduce it the way bug reports are written."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import FIXTURES, SCRIPTS, codes, findings_of
from factsbuild import layer, numerics_facts, run_rule
from torch import nn
from typer.testing import CliRunner

from qdoctor import facts as F
from qdoctor.compare.result import NOT_JUDGED, Candidate, Limits, recommend
from qdoctor.facts import Timing
from qdoctor.facts.weights import TRAINED, UNKNOWN, UNTRAINED, Weights, overridden
from qdoctor.gather.weights import builder_calls, weights_fact

UNTRAINED_FIXTURES = [
    "fixtures/untrained_mobilenet_v2_ptq.py",
    "fixtures/untrained_yolo_silu_cnn.py",
    "fixtures/untrained_resnet18_dynamic.py",
]
# random weights deliberately edited, then trained briefly on synthetic data: judged, and they keep their findings
TRAINED_FIXTURES = {
    "fixtures/error_hotspot_layer.py": {"QD020"},
    "fixtures/calibration_corrupted_row.py": {"QD020", "QD022"},
    "fixtures/per_tensor_outlier_channel.py": {"QD021"},
}


# ------------------------------------------------------------------------------------------------ the detector


class _Mlp(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


class _ConvBn(nn.Sequential):
    """torchvision-style: kaiming-normal (fan_out) convolutions, BatchNorm with running statistics."""

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.BatchNorm2d(64))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def _trained(model: nn.Module, steps: int = 60) -> nn.Module:
    generator = torch.Generator().manual_seed(2)
    teacher = torch.randn(64, 10, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        x = torch.randn(32, 64, generator=generator)
        loss = nn.functional.cross_entropy(model(x), (x @ teacher).argmax(dim=1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _fact(model: nn.Module | None, text: str = "", substitutions: list[F.Substitution] | None = None) -> Weights:
    return weights_fact(model, substitutions or [], text)


def test_a_fresh_model_is_untrained_and_says_why():
    torch.manual_seed(0)
    found = _fact(_Mlp())
    assert found.status == UNTRAINED and found.untrained
    assert "initial random draw" in found.reason
    assert found.layers_checked == found.layers_at_init == 5  # three weights, two biases (10 values: too few)
    assert "kaiming-uniform" in found.evidence[0]


def test_a_trained_model_is_trained():
    torch.manual_seed(0)
    found = _fact(_trained(_Mlp()))
    assert found.status == TRAINED and not found.untrained
    assert found.layers_at_init < found.layers_checked


def test_perturbed_weights_are_trained_but_a_few_hand_edited_values_are_not():
    torch.manual_seed(0)
    perturbed = _Mlp()
    with torch.no_grad():
        for parameter in perturbed.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    assert _fact(perturbed).status == TRAINED
    edited = _Mlp()
    with torch.no_grad():
        edited[0].bias[11] = -100.0  # a dead unit, set by hand in a random model: still a random model
        edited[2].weight[:, 11] *= 100.0
    assert _fact(edited).status == UNTRAINED


def test_batchnorm_statistics_tell_a_torchvision_style_model():
    torch.manual_seed(0)
    fresh = _ConvBn().eval()
    found = _fact(fresh)
    assert found.status == UNTRAINED and found.batchnorms == found.batchnorms_at_init == 2
    # trained: weights moved away from their draw, BatchNorm statistics updated
    trained = copy.deepcopy(fresh)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    trained.train()
    with torch.no_grad():
        trained(torch.randn(4, 3, 16, 16))
    found = _fact(trained.eval())
    assert found.status == TRAINED and found.batchnorms_at_init == 0
    # BatchNorm statistics at init with weights no initialisation explains (set by hand): never trained either
    hand_set = copy.deepcopy(fresh)
    with torch.no_grad():
        for parameter in hand_set.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    assert _fact(hand_set).status == UNTRAINED
    assert "BatchNorm" in _fact(hand_set).reason


def test_running_in_train_mode_or_calibrating_does_not_train():
    torch.manual_seed(0)
    model = _ConvBn()
    with torch.no_grad():
        model(torch.randn(4, 3, 16, 16))  # train mode: BatchNorm statistics move, no weight does
    found = _fact(model.eval())
    assert found.status == UNTRAINED and "ran in train mode" in found.reason
    quantized = torch.ao.quantization.quantize_dynamic(_Mlp().eval(), {nn.Linear}, dtype=torch.qint8)
    assert _fact(quantized).status == UNTRAINED  # int8 weights, dequantized, still the draw


def test_too_little_to_tell_is_unknown_and_the_script_text_and_stand_ins_decide():
    tiny = nn.Linear(4, 2)
    assert _fact(tiny).status == UNKNOWN
    text = "import torchvision\nmodel = torchvision.models.resnet18(weights=None)\n"
    found = _fact(tiny, text)
    assert found.status == UNTRAINED and "line 2" in found.reason
    assert _fact(tiny, text + "model.load_state_dict(torch.load('ckpt.pt'))\n").status == UNKNOWN
    stand_in = F.Substitution("checkpoint", "torch.load('ckpt.pt')", "random weights", None, 3)
    assert _fact(tiny, "", [stand_in]).status == UNTRAINED
    assert _fact(None).status == UNKNOWN


def test_builder_calls_read_from_the_script():
    text = (
        "import torchvision\nfrom torchvision.models import mobilenet_v2\nfrom torchvision import models\n"
        "a = torchvision.models.resnet18()\nb = mobilenet_v2(weights=None)\nc = models.resnet50(pretrained=False)\n"
        "d = models.resnet50(weights='IMAGENET1K_V1')\ne = models.quantization.mobilenet_v2(pretrained=True)\n"
        "f = models.list_models()\n"
    )
    found, loads = builder_calls(text)
    assert [line.split(" at line ")[1][0] for line in found] == ["4", "5", "6"]
    assert loads == []
    assert builder_calls("def broken(:\n") == ([], [])


def test_the_override_keeps_what_detection_said():
    detected = Weights(UNTRAINED, "every weight is still at its initial random draw")
    assert overridden(detected, "auto") is detected
    forced = overridden(detected, "trained")
    assert forced.status == TRAINED and forced.detected == UNTRAINED and "--weights trained" in forced.reason
    assert overridden(Weights(TRAINED, "x"), "untrained").note() is not None
    with pytest.raises(ValueError):
        overridden(detected, "maybe")


def test_the_note_says_untrained_and_how_to_judge_accuracy():
    note = Weights(UNTRAINED, "BatchNorm running statistics at their initial values").note()
    assert note is not None and "untrained" in note
    assert "checkpoint" in note and "evaluate(model)" in note and "calibration_data()" in note
    assert Weights(TRAINED, "moved").note() is None and Weights(UNKNOWN, "?").note() is None


# ------------------------------------------------------------------------------------------------ the rules


def _untrained(facts: F.Facts) -> F.Facts:
    facts.weights = Weights(UNTRAINED, "every weight is still at its initial random draw")
    return facts


def test_qd020_and_qd021_are_not_judged_on_untrained_weights():
    hotspot = [layer("conv1", 34.0), layer("conv2", 12.5), layer("conv3", 37.0), layer("fc", 36.0)]
    assert run_rule("QD020", numerics_facts(15.2, hotspot))
    assert run_rule("QD020", _untrained(numerics_facts(15.2, hotspot))) == []
    outliers = [layer("conv2", 20.0, weight_qscheme="torch.per_tensor_affine", weight_channel_range_ratio=40.0)]
    outliers[0].weight_sqnr_db, outliers[0].weight_sqnr_per_channel_db = 20.0, 40.0
    assert run_rule("QD021", numerics_facts(25.0, outliers))
    assert run_rule("QD021", _untrained(numerics_facts(25.0, outliers))) == []
    trained = numerics_facts(15.2, hotspot)
    trained.weights = overridden(Weights(UNTRAINED, "draw"), "trained")  # --weights trained: judged again
    assert run_rule("QD020", trained)


def test_qd022_still_fires_on_untrained_weights_where_its_harm_shows():
    harmful = [layer("quant", 0.5, type_="Quantize", kind=F.QUANT_STUB, levels_used=0.3), layer("fc1", 1.0)]
    (finding,) = run_rule("QD022", _untrained(numerics_facts(0.5, harmful)))
    assert finding.evidence["levels_used"] > 0 and finding.evidence["isolated_sqnr_db"] == 0.5


def test_qd022_needs_harm_and_a_measured_level_count():
    harmless = [layer("fc1", 45.0), layer("fc2", 44.0, levels_used=3.0), layer("fc3", 46.0)]
    assert run_rule("QD022", numerics_facts(40.0, harmless)) == []  # a wide range that costs nothing
    far_below = [layer("fc1", 45.0), layer("fc2", 30.0, levels_used=3.0), layer("fc3", 46.0)]
    assert run_rule("QD022", numerics_facts(28.0, far_below))  # above the floor, far below the rest
    unmeasured = [layer("fc1", 5.0, levels_used=None), layer("fc2", 40.0)]
    assert run_rule("QD022", numerics_facts(5.0, unmeasured)) == []
    # vanishing activations (random MobileNetV2): quantized at the observers' smallest step, no range to blame
    vanished = [layer("fc1", 30.0), layer("fc2", 0.0, output_scale=1.1920928955078125e-07, levels_used=0.2)]
    assert run_rule("QD022", numerics_facts(0.0, vanished)) == []


def test_a_row_of_one_value_spans_no_levels():
    """The level count comes from rows that vary: a layer with one output value per row has none (None, not 0.0)."""
    from qdoctor.gather.layer_numerics import layer_numerics

    loaded_module = _load(FIXTURES / "small_output_regressor.py")
    layers, _, _ = layer_numerics(loaded_module.subject, loaded_module.float_baseline, loaded_module.inputs, [])
    by_path = {x.path: x for x in layers}
    assert by_path["fc2"].levels_used is None  # one value per row
    assert by_path["fc1"].levels_used is not None and by_path["fc1"].levels_used > 0


def _load(path):
    from qdoctor.load.target import load_target

    return load_target(str(path))


@pytest.mark.parametrize("name", ["fixtures/calibration_corrupted_row.py", "fixtures/small_output_regressor.py"])
def test_qd022_evidence_is_self_consistent(check_fixture, name):
    """Every level count is above 0 where the layer produced values, and a QD022 finding shows its harm."""
    report = check_fixture(name)
    for x in report.facts.numerics.layers:
        assert x.levels_used is None or x.levels_used > 0, (x.path, x.levels_used)
    for finding in findings_of(report, "QD022"):
        assert finding.evidence["levels_used"] > 0 and "spans 0.0 " not in finding.message
        assert finding.evidence["isolated_sqnr_db"] is not None


def test_the_small_output_model_gets_no_qd022(check_fixture):
    report = check_fixture("fixtures/small_output_regressor.py")
    assert report.facts.numerics.sqnr_db > 25
    assert not {"QD020", "QD021", "QD022"} & set(codes(report))


# ------------------------------------------------------------------------------------------------ the fixtures


@pytest.mark.parametrize("name", UNTRAINED_FIXTURES)
def test_untrained_fixtures_get_no_accuracy_verdict_and_the_note(check_fixture, name):
    from conftest import as_json

    report = check_fixture(name)
    assert report.facts.weights.status == UNTRAINED, report.facts.weights
    # healthy recipes: no accuracy finding (QD022 neither: vanishing activations are not a calibration outlier)
    assert not {"QD020", "QD021", "QD022"} & set(codes(report))
    note = as_json(report)["weights"]["note"]
    assert "untrained" in note and "evaluate(model)" in note


def test_the_override_restores_the_verdict_on_the_tutorial_mobilenet(check_fixture):
    from qdoctor.run.check import CheckOptions, build_report

    report = check_fixture("fixtures/untrained_mobilenet_v2_ptq.py")
    assert report.facts.numerics.sqnr_db < F.SQNR_FLOOR_DB  # the random draw's SQNR: below the floor
    facts = copy.copy(report.facts)
    facts.weights = overridden(report.facts.weights, "trained")
    assert "QD020" in {f.rule for f in build_report(facts, CheckOptions(verify=False)).findings}


@pytest.mark.parametrize("name", sorted(TRAINED_FIXTURES))
def test_trained_accuracy_fixtures_keep_their_findings(check_fixture, name):
    report = check_fixture(name)
    assert report.facts.weights.status == TRAINED, report.facts.weights
    assert TRAINED_FIXTURES[name] <= set(codes(report))


@pytest.mark.parametrize("name", ["fx_error_hotspot.py", "hotspot_with_evaluate.py"])
def test_trained_accuracy_scripts_are_judged(name):
    loaded = _load(SCRIPTS / name)
    model = loaded.float_baseline if loaded.float_baseline is not None else loaded.subject
    assert weights_fact(model, loaded.target.substitutions, loaded.target.script_text).status == TRAINED


def test_weights_option_reaches_the_facts_and_bad_values_fail():
    from qdoctor.cli import app
    from qdoctor.gather import GatherOptions
    from qdoctor.run.check import CheckOptions, check

    options = CheckOptions(gather=GatherOptions(bench=False, profile=False, weights="untrained"), verify=False)
    report = check(str(FIXTURES / "healthy_static.py"), options)
    assert report.facts.weights.status == UNTRAINED and report.facts.weights.source == "--weights"
    result = CliRunner().invoke(app, ["check", str(FIXTURES / "healthy_static.py"), "--weights", "maybe"])
    assert result.exit_code == 2 and "--weights" in result.output


@pytest.mark.parametrize("fmt", ["terminal", "json", "markdown", "sarif", "html"])
def test_untrained_weights_are_said_in_the_header_of_every_format(fmt):
    from sample_report import sample_report

    from qdoctor.report.render import OutputFormat, render

    report = sample_report()
    before = render(report, OutputFormat(fmt), width=400)
    if fmt == "sarif":  # its rule descriptors carry the rule documents, which explain untrained weights
        assert json.loads(before)["runs"][0]["properties"]["weights"] is None
    else:
        assert "untrained" not in before
    report.facts.weights = Weights(UNTRAINED, "BatchNorm running statistics at their initial values")
    text = render(report, OutputFormat(fmt), width=400)
    said = "untrained weights (BatchNorm running statistics"
    if fmt == "json":
        assert said in json.loads(text)["weights"]["note"]
    elif fmt == "sarif":
        assert said in json.loads(text)["runs"][0]["properties"]["weights"]["note"]
    else:  # in the header, before any finding
        assert said in text and not any(f.message[:40] in text[: text.index(said)] for f in report.findings)


# ------------------------------------------------------------------------------------------------ compare


def _timed(recipe: str, ms: float, sqnr_db: float | None = None) -> Candidate:
    c = Candidate(recipe, "fx" if recipe != "fp32" else "fp32", "x86", recipe, code=f"# {recipe}")
    c.latency = Timing(median_ms=ms, iqr_ms=ms / 100, runs=20, number_per_run=10, num_threads=1, noisy=False)
    c.speedup = 30.0 / ms
    c.speedup_interval = F.Ratio(c.speedup, c.speedup * 0.98, c.speedup * 1.02, "paired")
    c.sqnr_db = sqnr_db
    return c


def test_compare_recommends_by_speed_on_untrained_weights():
    candidates = [_timed("fp32", 30.0, float("inf")), _timed("fx-x86", 10.0, 11.0), _timed("eager-x86", 12.0, 12.0)]
    judged = recommend(candidates, Limits())
    assert judged.recipe == "fp32" and "outside the accuracy limit" in judged.reason
    unjudged = recommend(candidates, Limits(), accuracy_judged=False)
    assert unjudged.recipe == "fx-x86" and NOT_JUDGED in unjudged.reason
    slow = [_timed("fp32", 30.0, float("inf")), _timed("fx-x86", 29.0, 11.0)]
    kept = recommend(slow, Limits(), accuracy_judged=False)
    assert kept.recipe == "fp32" and NOT_JUDGED in kept.reason


def test_compare_on_random_mobilenet_v2_does_not_judge_accuracy():
    from qdoctor.compare import CompareOptions, compare
    from qdoctor.compare.reporters import CompareFormat, render

    result = compare(
        str(FIXTURES / "compare_mobilenet_v2.py"),
        CompareOptions(recipes="fp32,fx-x86", bench_time=0.05, check_batches=2, calibration_batches=2),
    )
    assert result.weights.status == UNTRAINED and not result.accuracy_judged
    assert "accuracy not judged (untrained weights)" in result.recommendation.reason
    fx = result.get("fx-x86")
    assert fx is not None and fx.ok and fx.sqnr_db is not None and fx.within_limit is None
    for fmt in (CompareFormat.terminal, CompareFormat.markdown, CompareFormat.html):
        text = render(result, fmt)
        assert "too lossy" not in text and NOT_JUDGED in text and "untrained" in text
    doc = json.loads(render(result, CompareFormat.json))
    assert doc["weights"]["status"] == UNTRAINED and "untrained" in doc["weights"]["note"]


def test_a_call_is_a_builder_by_where_its_name_comes_from():
    """torch.ao.quantization's functions (get_default_qconfig, prepare, fuse_modules) are not torchvision builders,
    however their dotted names end; torchvision's quantizable builders are, under any alias."""
    text = (
        "import torch\nimport torchvision.models.quantization as models\nfrom torch.ao import quantization\n"
        "qc = torch.ao.quantization.get_default_qconfig('x86')\np = quantization.prepare(m)\n"
        "q = torch.quantization.quantize_dynamic(m)\nr = models.resnet18(weights=None, quantize=True)\n"
        "s = torchvision.models.quantization.mobilenet_v2()\n"
    )
    found, _ = builder_calls(text)
    assert [line.split(" at line ")[1][0] for line in found] == ["7", "8"]
    assert builder_calls("r = models.quantization.resnet18()\n")[0]  # a report's snippet without its imports
