"""The healthy-recipe sweep, CI subset (tests/matrix/recipes.py: Recipe.ci): reference quantization recipes on
random weights must get no warning or error finding except a measured true cause listed with the recipe, and no
crash. Checked without timing; bench/sweep.py checks every recipe with timing. Recipes that fail because of work
pending elsewhere are listed in tests/matrix/expectations.toml ([sweep_pending]) and run as strict xfails.
"""

from __future__ import annotations

import pytest

from matrix.outcome import check_script, sweep_pending, sweep_problems
from matrix.recipes import RECIPES, TORCHVISION, ci_recipes


def _params() -> list:
    known = sweep_pending()
    return [
        pytest.param(
            r, marks=[pytest.mark.xfail(reason=known[r.name], strict=True)] if r.name in known else [], id=r.name
        )
        for r in ci_recipes()
    ]


@pytest.mark.parametrize("recipe", _params())
def test_healthy_recipe(recipe, tmp_path):
    outcome = check_script(recipe.write(tmp_path))
    found = sweep_problems(recipe.known, outcome)
    assert not found, (found, outcome.codes, outcome.subject, outcome.float_baseline)
    assert outcome.subject == "quantized_model" and outcome.float_baseline == "float_model"


def test_the_sweep_holds_every_torchvision_quantizable_model_and_the_other_recipes():
    import inspect

    import torchvision.models.quantization as tvq

    builders = {n for n in dir(tvq) if n[0].islower() and inspect.isfunction(getattr(tvq, n))}
    assert builders == {builder for builder, _, _ in TORCHVISION.values()}
    assert {f"tv_ptq_{name}" for name in TORCHVISION} <= set(RECIPES)
    for name in (
        "fx_ptq_resnet18",
        "fx_ptq_mobilenet_v2",
        "pt2e_x86_inductor_resnet18",
        "pt2e_x86_inductor_mobilenet_v2",
    ):
        assert name in RECIPES
    assert {"bert_dynamic", "bert_torchao_int8_dynamic"} <= set(RECIPES)
    assert set(sweep_pending()) <= set(RECIPES)
