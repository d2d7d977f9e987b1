"""qdoctor compare: recipe selection, skip reasons, the recommendation (pure, on hand-built results), the result's
shape on small models, the four formats and the CLI. Never a wall-clock assertion."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from conftest import FIXTURES, SCRIPTS
from typer.testing import CliRunner

from qdoctor.cli import app
from qdoctor.compare import CompareOptions, compare, recommend, to_dict
from qdoctor.compare import recipes as R
from qdoctor.compare.reporters import CompareFormat, render
from qdoctor.compare.result import FP32, Candidate, Limits, accuracy_within_limit, metric_drop_points
from qdoctor.facts import Environment, Timing
from qdoctor.flows.pt2e import RECIPE as PT2E_RECIPE

runner = CliRunner()
FAST = dict(bench_time=0.05, check_batches=2, calibration_batches=2)


def _env(**overrides) -> Environment:
    base = Environment(
        torch_version="2.14.1",
        python_version="3.11",
        platform="linux",
        machine="x86_64",
        cpu_model="test cpu",
        cpu_isa=["avx2", "avx512_vnni"],
        cpu_capability="AVX512",
        cpu_count=2,
        quantized_engine="x86",
        supported_engines=["qnnpack", "onednn", "x86", "fbgemm"],
        num_threads=2,
        num_interop_threads=2,
        thread_env={},
    )
    return replace(base, **overrides)


def _timed(recipe: str, ms: float, **fields) -> Candidate:
    flow = recipe.split("-")[0]
    c = Candidate(recipe, flow, None if recipe == FP32 else "x86", recipe, code=f"code for {recipe}")
    c.latency = Timing(median_ms=ms, iqr_ms=ms * 0.01, runs=10, number_per_run=1, num_threads=2, noisy=False)
    for key, value in fields.items():
        setattr(c, key, value)
    return c


def _with_speedups(candidates: list[Candidate]) -> list[Candidate]:
    fp32 = next(c for c in candidates if c.recipe == FP32)
    for c in candidates:
        c.speedup = fp32.latency.median_ms / c.latency.median_ms
    return candidates


# ------------------------------------------------------------------------------------------ recommendation (pure)


def test_recommends_the_fastest_recipe_within_the_sqnr_limit():
    candidates = _with_speedups(
        [
            _timed(FP32, 80.0, sqnr_db=math.inf),
            _timed("fx-qnnpack", 10.0, sqnr_db=12.0),  # fastest, but too lossy
            _timed("fx-x86", 20.0, sqnr_db=31.0, size_ratio=3.9),
            _timed("dynamic-x86", 79.0, sqnr_db=45.0),
        ]
    )
    rec = recommend(candidates, Limits())
    assert rec.recipe == "fx-x86"
    assert rec.code == "code for fx-x86"
    assert "4.00x faster" in rec.reason and "3.9x smaller" in rec.reason


def test_evaluate_drop_decides_over_sqnr_when_present():
    limits = Limits(max_drop=1.0)
    lossy = _timed("fx-x86", 10.0, sqnr_db=40.0, metric=0.95, metric_drop=2.0)
    fine = _timed("fx-onednn", 20.0, sqnr_db=15.0, metric=0.965, metric_drop=0.5)
    assert accuracy_within_limit(lossy, limits) is False
    assert accuracy_within_limit(fine, limits) is True
    rec = recommend(_with_speedups([_timed(FP32, 80.0, metric=0.97), lossy, fine]), limits)
    assert rec.recipe == "fx-onednn"
    assert "evaluate() within 1 point(s)" in rec.reason


def test_keeps_fp32_when_no_int8_recipe_is_clearly_faster():
    candidates = _with_speedups([_timed(FP32, 87.0), _timed("dynamic-x86", 86.0, sqnr_db=40.0)])
    rec = recommend(candidates, Limits(min_speedup=1.1))
    assert rec.recipe == FP32
    assert "keep fp32" in rec.reason and "dynamic-x86" in rec.reason and "1.01x" in rec.reason


def test_keeps_fp32_and_names_faster_recipes_that_are_too_lossy():
    candidates = _with_speedups([_timed(FP32, 80.0), _timed("fx-qnnpack", 10.0, sqnr_db=5.0)])
    rec = recommend(candidates, Limits())
    assert rec.recipe == FP32
    assert "fx-qnnpack (8.00x" in rec.reason


def test_unknown_accuracy_is_never_recommended_and_failures_are_ignored():
    unknown = _timed("fx-x86", 10.0)  # no SQNR, no evaluate(): cannot vouch for it
    failed = Candidate("fx-fbgemm", "fx", "fbgemm", "", status="failed", reason="boom")
    assert accuracy_within_limit(unknown, Limits()) is None
    rec = recommend(_with_speedups([_timed(FP32, 80.0), unknown]) + [failed], Limits())
    assert rec.recipe == FP32


def test_without_fp32_the_fastest_accurate_recipe_is_still_named():
    rec = recommend([_timed("fx-x86", 10.0, sqnr_db=30.0)], Limits())
    assert rec.recipe == "fx-x86" and "fp32 itself could not be measured" in rec.reason
    assert recommend([], Limits()).recipe is None


def test_metric_drop_reads_fractions_as_percent():
    assert metric_drop_points(0.97, 0.96) == pytest.approx(1.0)
    assert metric_drop_points(97.0, 96.0) == pytest.approx(1.0)
    assert metric_drop_points(0.9, 0.95) == pytest.approx(-5.0)


# ---------------------------------------------------------------------------------------------- recipe selection


def test_default_selection_is_fp32_dynamic_eager_and_fx_on_every_engine():
    chosen, not_run = R.select(None, _env())
    assert [r.name for r in chosen] == [
        "fp32",
        "dynamic-x86",
        "eager-x86",
        "fx-x86",
        "fx-fbgemm",
        "fx-qnnpack",
        "fx-onednn",
    ]
    assert PT2E_RECIPE in not_run and "torch.compile" in not_run[PT2E_RECIPE]


def test_selection_by_flow_name_and_all():
    chosen, not_run = R.select("fx,dynamic-qnnpack", _env())
    assert [r.name for r in chosen] == ["fp32", "fx-x86", "fx-fbgemm", "fx-qnnpack", "fx-onednn", "dynamic-qnnpack"]
    everything, not_run = R.select("all", _env())
    assert PT2E_RECIPE in [r.name for r in everything] and not not_run
    assert len(everything) == 1 + 3 * len(R.ENGINES) + 1


def test_arm_defaults_to_qnnpack():
    chosen, _ = R.select(None, _env(machine="aarch64", supported_engines=["qnnpack"]))
    assert [r.name for r in chosen][:3] == ["fp32", "dynamic-qnnpack", "eager-qnnpack"]


def test_unknown_recipe_is_an_error_listing_the_known_ones():
    with pytest.raises(ValueError, match="unknown recipe 'fx-tpu'.*fx-x86"):
        R.select("fx-tpu", _env())


def test_unsupported_engine_and_non_x86_pt2e_are_skipped_with_reasons():
    env = _env(machine="aarch64", supported_engines=["qnnpack"])
    recipes = {r.name: r for r in R.catalog()}
    assert "not in torch.backends.quantized.supported_engines" in R.unavailable(recipes["fx-onednn"], env)
    assert "x86" in R.unavailable(recipes[PT2E_RECIPE], env)
    assert R.unavailable(recipes["fx-qnnpack"], env) is None


def test_eager_failure_points_at_the_model_line_even_inside_torchvision():
    # A frame in site-packages/torchvision must not be mistaken for torch's own (same path prefix).
    fake = R._TORCH_DIR.rstrip("/\\") + "vision/models/resnet.py"
    code = compile(
        "def forward():\n    raise RuntimeError(\"Could not run 'aten::add.out' with arguments from the "
        "'QuantizedCPU' backend. more text\")\n",
        fake,
        "exec",
    )
    namespace: dict = {}
    exec(code, namespace)
    try:
        namespace["forward"]()
    except RuntimeError as exc:
        text = R.explain_eager_failure(exc)
    assert "aten::add.out received a quantized tensor" in text
    assert "torchvision/models/resnet.py:2" in text.replace("\\", "/")
    assert "torchvision.models.quantization" in text


def test_time_in_turns_times_each_contender_in_every_round_under_its_context():
    import contextlib

    from qdoctor.compare.turns import Contender, time_in_turns

    entered = {"a": 0, "b": 0}
    calls = {"b": 0}

    def context(key):
        @contextlib.contextmanager
        def enter():
            entered[key] += 1
            yield

        return enter

    def flaky():
        calls["b"] += 1
        if calls["b"] > 10:  # fine while warming up (a few calls), raises in the first timed round
            raise RuntimeError("kernel went away")

    x = torch.randn(8, 8)
    results, rounds = time_in_turns(
        [Contender("a", lambda: x @ x, context("a")), Contender("b", flaky, context("b"))],
        min_run_time=0.01,
        min_rounds=6,
        max_rounds=6,
    )
    assert results["a"].runs == 6 and results["a"].median_ms > 0
    assert entered["a"] == 1 + 6  # warm-up, then once per round
    assert isinstance(results["b"], RuntimeError)
    assert entered["b"] == 2  # warm-up and the round it failed in; never again
    assert rounds.ratio("a", "b") is None  # no ratio with a contender that raised


# ----------------------------------------------------------------------------------------- end to end, small model


@pytest.fixture(scope="module")
def residual_result():
    engine, threads = torch.backends.quantized.engine, torch.get_num_threads()
    result = compare(
        str(SCRIPTS / "compare_residual_cnn.py"),
        CompareOptions(recipes="fp32,dynamic-x86,eager-x86,fx-x86,fx-qnnpack", **FAST),
    )
    assert (torch.backends.quantized.engine, torch.get_num_threads()) == (engine, threads)
    return result


def test_every_selected_recipe_has_a_result(residual_result):
    names = [c.recipe for c in residual_result.candidates]
    assert names == ["fp32", "dynamic-x86", "eager-x86", "fx-x86", "fx-qnnpack"]
    by = {c.recipe: c for c in residual_result.candidates}
    for name in ("fp32", "fx-x86", "fx-qnnpack"):
        c = by[name]
        assert c.status == "ok", (name, c.reason)
        assert c.latency is not None and c.latency.runs > 0
        assert c.size_bytes and c.speedup and c.build_s is not None
        assert c.code
    assert math.isinf(by["fp32"].sqnr_db) and by["fp32"].top1_agreement == 1.0
    assert by["fx-x86"].sqnr_db is not None and by["fx-x86"].sqnr_db > 10
    assert by["fx-x86"].top1_samples == 4  # two check batches of 2 class-score rows
    assert by["fx-x86"].size_ratio > 1.0  # int8 weights (tiny model: pickle overhead dominates)


def test_skip_reasons_name_the_cause(residual_result):
    by = {c.recipe: c for c in residual_result.candidates}
    assert by["dynamic-x86"].status == "skipped"
    assert "no nn.Linear, LSTM or GRU" in by["dynamic-x86"].reason
    eager = by["eager-x86"]
    assert eager.status == "skipped"
    assert "QuantizedCPU" not in eager.reason  # explained, not pasted
    assert "FloatFunctional" in eager.reason and "compare_residual_cnn.py:" in eager.reason
    assert "x = self.relu(x + self.branch(x))" in eager.reason


def test_recommendation_and_sorting(residual_result):
    rec = residual_result.recommendation
    assert rec.recipe in {c.recipe for c in residual_result.candidates if c.ok}
    ordered = residual_result.by_speed()
    timed = [c.latency.median_ms for c in ordered if c.ok]
    assert timed == sorted(timed)
    assert [c.status for c in ordered][-2:] == ["skipped", "skipped"]


def test_json_document_shape(residual_result):
    doc = json.loads(render(residual_result, CompareFormat.json))
    assert doc["schema_version"] == 1 and doc["kind"] == "compare"
    assert {"target", "environment", "limits", "recommendation", "candidates", "not_run", "notes"} <= set(doc)
    first = doc["candidates"][0]
    assert {
        "recipe",
        "status",
        "latency",
        "speedup",
        "size_bytes",
        "sqnr_db",
        "top1_agreement",
        "metric",
        "code",
    } <= set(first)
    assert {"median_ms", "iqr_ms", "runs"} <= set(first["latency"])
    fp32 = next(c for c in doc["candidates"] if c["recipe"] == "fp32")
    assert fp32["sqnr_db"] == "inf"
    assert doc == json.loads(json.dumps(to_dict(residual_result)))


def test_text_formats_show_every_recipe_and_the_recommendation(residual_result):
    rec = residual_result.recommendation.recipe
    for fmt in (CompareFormat.terminal, CompareFormat.markdown, CompareFormat.html):
        text = render(residual_result, fmt)
        for c in residual_result.candidates:
            assert c.recipe in text, (fmt, c.recipe)
        assert rec in text
    html = render(residual_result, CompareFormat.html)
    assert (
        html.startswith("<!DOCTYPE html>")
        and "<svg" in html
        and "<script" not in html
        and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    markdown = render(residual_result, CompareFormat.markdown)
    assert "| recipe |" in markdown and "```python" in markdown


def test_eager_runs_where_the_model_has_its_own_stubs():
    result = compare(str(FIXTURES / "healthy_static.py"), CompareOptions(recipes="eager-x86,dynamic-x86", **FAST))
    by = {c.recipe: c for c in result.candidates}
    assert by["eager-x86"].status == "ok", by["eager-x86"].reason
    assert any("fused" in step for step in by["eager-x86"].steps)
    assert "QuantWrapper" not in by["eager-x86"].code  # it has its own QuantStub
    assert by["dynamic-x86"].status == "ok" and "nn.Linear" in by["dynamic-x86"].code


def test_pt2e_recipe_compiles_and_is_measured():
    pytest.importorskip("torchao")
    result = compare(str(SCRIPTS / "compare_residual_cnn.py"), CompareOptions(recipes="pt2e-x86", **FAST))
    pt2e = result.get("pt2e-x86")
    assert pt2e.status == "ok", (pt2e.phase, pt2e.reason)
    assert pt2e.first_run_s is not None and pt2e.latency is not None and pt2e.size_bytes
    assert pt2e.sqnr_db is not None and pt2e.sqnr_db > 10
    assert "convert_pt2e" in pt2e.code and "freezing = True" in pt2e.code
    assert not result.not_run  # selected, so not listed as left out
    import torch._inductor.config as inductor_config

    assert inductor_config.freezing is False  # restored after the run


# --------------------------------------------------------------------------------------- real accuracy: digits


def test_digits_cnn_reports_real_accuracy():
    pytest.importorskip("sklearn")
    result = compare(str(FIXTURES / "digits_cnn.py"), CompareOptions(recipes="fx-x86", **FAST))
    fp32, fx = result.get("fp32"), result.get("fx-x86")
    assert result.metric_name == "evaluate()"
    assert fp32.metric is not None and fp32.metric > 0.9  # trained, not random
    assert fx.status == "ok" and fx.metric is not None and fx.metric_drop is not None
    assert abs(fx.metric_drop) < 5.0
    assert fx.within_limit == (fx.metric_drop <= result.limits.max_drop)
    assert "calibration_data()" in result.calibration_source


# ------------------------------------------------------------------------------------------------------- the CLI


def test_cli_json_to_a_file(tmp_path):
    out = tmp_path / "compare.json"
    result = runner.invoke(
        app,
        [
            "compare",
            str(SCRIPTS / "compare_residual_cnn.py"),
            "--recipes",
            "fx-x86",
            "-f",
            "json",
            "-o",
            str(out),
            "--bench-time",
            "0.05",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert [c["recipe"] for c in doc["candidates"]] != [] and {"fp32", "fx-x86"} == {
        c["recipe"] for c in doc["candidates"]
    }
    assert [p.name for p in tmp_path.iterdir()] == ["compare.json"]  # no temporary file left beside it


def test_cli_bad_input_is_one_line_and_exit_2():
    bad_recipe = runner.invoke(app, ["compare", str(SCRIPTS / "compare_residual_cnn.py"), "--recipes", "int4"])
    assert bad_recipe.exit_code == 2 and "unknown recipe 'int4'" in bad_recipe.output
    bad_format = runner.invoke(app, ["compare", str(SCRIPTS / "compare_residual_cnn.py"), "-f", "pdf"])
    assert bad_format.exit_code == 2 and "--format" in bad_format.output
    missing = runner.invoke(app, ["compare", "no_such_model.py"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output


def test_a_quantized_model_without_float_model_cannot_be_compared():
    result = runner.invoke(app, ["compare", str(SCRIPTS / "quantized_only.py")])
    assert result.exit_code == 2
    assert "compare needs the float model" in result.output and "Traceback" not in result.output


def test_a_broken_evaluate_stops_the_compare_with_one_line():
    result = runner.invoke(app, ["compare", str(SCRIPTS / "compare_bad_evaluate.py"), "--bench-time", "0.05"])
    assert result.exit_code == 2
    assert "evaluate(float model) failed: KeyError" in result.output and "Traceback" not in result.output


def test_a_failing_recipe_never_ends_the_run():
    result = compare(str(SCRIPTS / "compare_untraceable.py"), CompareOptions(recipes="fx-x86,dynamic-x86", **FAST))
    fx, dynamic = result.get("fx-x86"), result.get("dynamic-x86")
    assert fx.status == "failed" and fx.phase == "build"
    assert "TraceError" in fx.reason and fx.traceback
    assert dynamic.status == "ok" and result.get("fp32").ok
    assert result.recommendation.recipe in ("fp32", "dynamic-x86")
    doc = json.loads(render(result, CompareFormat.json))
    failed = next(c for c in doc["candidates"] if c["recipe"] == "fx-x86")
    assert failed["status"] == "failed" and "TraceError" in failed["reason"]
    assert "fx-x86: failed while building: TraceError" in render(result, CompareFormat.terminal, width=300)
