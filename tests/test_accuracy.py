"""The accuracy doctor end to end: per-layer numerics gathered once, the verified fixes of QD020-QD022 bringing the
SQNR back to what int8 normally gives, the speed/accuracy table, and the report section. SQNR is deterministic
(fixed seeds, one thread of arithmetic); no timing is asserted."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from conftest import FIXTURES, SCRIPTS, as_json
from test_verify import prescribe_target

from qdoctor.facts import SQNR_FLOOR_DB

HEALTHY_MIN_DB = 26.0  # "back to ~26-31 dB": what int8 normally gives on these models


@functools.cache
def prescribed(path: str):
    return prescribe_target(path)


def test_corrupted_calibration_row_is_named_and_recalibrating_without_it_restores_the_sqnr():
    done = prescribed(str(FIXTURES / "calibration_corrupted_row.py"))
    assert done.untouched == []
    assert done.facts.numerics.sqnr_db < 1.0  # every normal input quantizes to zero
    (qd022,) = [f for f in done.findings if f.rule == "QD022"]
    assert qd022.location.module == "quant" and qd022.evidence["outlier_rows"] == [[3, 17]]
    verified = done.verified("QD022")
    assert verified.applied and verified.after_sqnr_db >= HEALTHY_MIN_DB
    assert verified.details["calibration_rows_left_out"] == [[3, 17]]
    # QD020 fires (below the floor) but leaves the fix to QD022: keeping layers in float cannot fix a range
    qd020 = done.verified("QD020")
    assert not qd020.applied and "QD022" in qd020.reason
    assert done.prescription.fallback is None


def test_per_tensor_outlier_channel_is_named_and_per_channel_weights_restore_the_sqnr():
    done = prescribed(str(FIXTURES / "per_tensor_outlier_channel.py"))
    assert done.untouched == []
    verified = done.verified("QD021")
    assert verified.applied
    assert verified.after_sqnr_db >= HEALTHY_MIN_DB
    assert verified.after_sqnr_db - verified.before_sqnr_db >= 8.0  # ~10 dB lost to per-tensor weights
    code = done.fix_all.code
    assert 'get_default_qconfig("x86")' in code and "QConfig(" not in code


def test_error_hotspot_kept_in_float_restores_the_sqnr_and_the_table_stops_at_one_layer():
    done = prescribed(str(FIXTURES / "error_hotspot_layer.py"))
    verified = done.verified("QD020")
    assert verified.applied and verified.before_sqnr_db < SQNR_FLOOR_DB
    assert verified.after_sqnr_db >= HEALTHY_MIN_DB
    assert "kept in float: fc2" in verified.steps
    table = done.prescription.fallback
    assert table.chosen == 0 and table.steps[0].float_layers == ["fc2"]
    assert table.steps[0].sqnr_db >= SQNR_FLOOR_DB
    assert "setattr(parent, child, torch.nn.Sequential(" in table.steps[0].code


def test_fx_error_hotspot_is_measured_per_layer_and_kept_float_with_set_module_name():
    done = prescribed(str(SCRIPTS / "fx_error_hotspot.py"))
    layers = {x.path: x for x in done.facts.numerics.layers}
    assert set(layers) == {"fc1", "fc2", "fc3", "fc4"}
    assert layers["fc2"].isolated_sqnr_db < layers["fc3"].isolated_sqnr_db - 10
    verified = done.verified("QD020")
    assert verified.applied and verified.after_sqnr_db >= HEALTHY_MIN_DB
    assert 'qconfig_mapping.set_module_name("fc2", None)' in done.fix_all.code


def test_the_fixed_code_runs_and_gives_the_verified_model():
    """The QD022 snippet's calibration loop, run as printed, leaves the corrupted row out."""
    from qdoctor.prescribe.calibration import skipping_rows_code

    seen = []
    loop = skipping_rows_code(
        lambda work: f"with torch.no_grad():\n    for batch in calibration_data():\n        {work}(*batch)", ((1, 2),)
    )("record")
    batches = [(torch.arange(4.0).reshape(4, 1) + 10 * i,) for i in range(3)]
    exec(loop, {"torch": torch, "calibration_data": lambda: batches, "record": lambda x: seen.append(x.flatten())})
    assert [t.tolist() for t in seen] == [[0, 1, 2, 3], [10, 11, 13], [20, 21, 22, 23]]


def test_layer_numerics_json_and_html_section():
    from qdoctor.gather import GatherOptions
    from qdoctor.report.render import OutputFormat, render
    from qdoctor.run.check import CheckOptions, check

    report = check(
        str(FIXTURES / "error_hotspot_layer.py"),
        CheckOptions(gather=GatherOptions(bench=False, profile=False), verify=False),
    )
    data = as_json(report)
    layers = data["numerics"]["layers"]
    assert [x["path"] for x in layers] == ["quant", "fc1", "fc2", "fc3", "fc4"]
    assert {"accumulated_sqnr_db", "isolated_sqnr_db", "weight_sqnr_db", "levels_used", "outlier_rows"} <= set(
        layers[1]
    )
    json.dumps(data, allow_nan=False)
    html = render(report, OutputFormat.html)
    assert "Where the error comes from" in html and 'aria-label="SQNR per layer' in html
    assert "<script" not in html  # self-contained, no script
    markdown = render(report, OutputFormat.markdown)
    assert "### Where the error comes from" in markdown and "| fc2 |" in markdown


def test_pt2e_subject_says_why_it_has_no_layers():
    from qdoctor.gather.layer_numerics import why_no_layers

    class Float(torch.nn.Module):
        def forward(self, x):
            return x + 1

    assert why_no_layers(Float()) == "no quantized layer in the subject"


@pytest.mark.parametrize("name", ["healthy_static.py", "small_mlp_int8.py"])
def test_healthy_models_measure_above_the_floor_at_every_layer(name):
    from qdoctor.gather.layer_numerics import layer_numerics
    from qdoctor.load.target import load_target

    loaded = load_target(str(FIXTURES / name))
    layers, seen, _ = layer_numerics(loaded.subject, loaded.float_baseline, loaded.inputs, [])
    assert seen == 1 and layers
    assert all(x.isolated_sqnr_db > HEALTHY_MIN_DB for x in layers)
    assert all(x.weight_sqnr_db is None or x.weight_sqnr_db > 40 for x in layers)


def test_with_evaluate_the_drop_in_points_leads_and_the_table_uses_it():
    done = prescribed(str(SCRIPTS / "hotspot_with_evaluate.py"))
    numerics = done.facts.numerics
    assert numerics.metric_float == 1.0 and numerics.accuracy_drop_points > 1.0
    (finding,) = [f for f in done.findings if f.rule == "QD020"]
    assert finding.message.startswith("evaluate() drops")
    table = done.prescription.fallback
    assert table.target.startswith("evaluate() within")
    step = table.steps[table.chosen]
    assert step.float_layers[0] == "fc2" and step.drop_points <= 1.0
