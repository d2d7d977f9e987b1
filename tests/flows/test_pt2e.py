"""The PT2E flow: detection of exported graphs, what it rebuilds with, its snippets and its lowering (compare)."""

from __future__ import annotations

import torch
from flowtools import EXAMPLE, detected, float_net

from qdoctor import flows
from qdoctor.facts import Environment
from qdoctor.introspect.flow import model_flow

PT2E = flows.flow_named("pt2e")


def test_an_exported_graph_is_pt2e_and_a_float_one_is_rebuilt_the_fx_way():
    exported = torch.export.export(float_net(), EXAMPLE).module()
    found = detected(exported)
    assert found.flow is PT2E and found.kind.exported_graph and found.stage is None
    assert flows.rebuild_flow(model_flow(exported)) is flows.flow_named("fx")


def test_its_snippets_are_what_rules_quote():
    kind = PT2E.kind
    assert "convert_pt2e(net)" in kind.convert_code.format(model="net")
    assert 'for name in ["fc"]:' in kind.keep_float_code.format(names='"fc"')
    compile(kind.keep_float_code.format(names='"fc"'), "<snippet>", "exec")


def test_its_recipe_is_slow_compiles_on_first_run_and_needs_x86():
    (recipe,) = PT2E.recipes(("x86", "qnnpack"))
    assert PT2E.slow_reason and PT2E.compiles_on_first_run and PT2E.default_recipes("x86", ("x86",)) == []
    arm = Environment(
        torch_version="2.14.1",
        python_version="3.11",
        platform="linux",
        machine="aarch64",
        cpu_model="test cpu",
        cpu_isa=["asimd"],
        cpu_capability="DEFAULT",
        cpu_count=4,
        quantized_engine="qnnpack",
        supported_engines=["qnnpack"],
        num_threads=4,
        num_interop_threads=4,
        thread_env={},
    )
    assert "x86" in (PT2E.unavailable(recipe, arm) or "")
