"""The flow registry (qdoctor.flows): every flow module registers one Flow, each has its tests, detection covers the
flows, and no code outside flows/ compares a flow's name (it asks the flow, or the FlowKind Facts carry)."""

from __future__ import annotations

import ast
import dataclasses
import pkgutil
from pathlib import Path
from typing import Any

import pytest

from qdoctor import flows
from qdoctor.facts import NO_FLOW
from qdoctor.introspect.flow import ATEN_GRAPH, FX_GRAPH, ModelFlow

PACKAGE = Path(__file__).resolve().parents[1] / "qdoctor"
TESTS = Path(__file__).resolve().parent

# Where a string equal to a flow name is compared outside flows/ without naming a flow: (file, string) -> why.
NOT_A_FLOW = {
    ("load/saved.py", "torchscript"): "a saved file's format (torch.jit.save archive), not the flow that made it",
    ("gather/graph.py", "dynamic"): "a substring of an op name (quantized::linear_dynamic)",
    ("diagnose/flow_causes.py", "torchao"): "the torchao package in a traceback's file path",
}


def flow_names() -> set[str]:
    return {f.name for f in flows.all_flows()}


def test_every_flow_module_registers_exactly_one_flow():
    public = sorted(i.name for i in pkgutil.iter_modules(flows.__path__) if not i.name.startswith("_"))
    registered = flows.flow_modules()
    assert sorted(m.rsplit(".", 1)[1] for m in registered.values()) == public
    assert set(registered) == flow_names()
    assert NO_FLOW.name not in flow_names()
    priorities = [f.priority for f in flows.all_flows()]
    assert len(set(priorities)) == len(priorities), "two flows share a detection priority"


def test_every_flow_module_has_its_tests():
    """tests/flows/test_<module>.py for each flow module: adding a flow is its module plus its tests."""
    missing = [
        name
        for name in (m.rsplit(".", 1)[1] for m in flows.flow_modules().values())
        if not (TESTS / "flows" / f"test_{name}.py").exists()
    ]
    assert not missing, f"flow modules without tests/flows/test_<name>.py: {missing}"


def test_a_flow_provides_the_whole_interface():
    for flow in flows.all_flows():
        cls = type(flow)
        assert cls.matches is not flows.Flow.matches, f"{flow.name}: no detection"
        assert flow.kind.title and flow.kind.name == flow.name
        if flow.plan_fields:
            assert cls.rebuild is not flows.Flow.rebuild, f"{flow.name} declares plan fields but does not rebuild"
            assert {"engine", "threads"} <= flow.plan_fields
        for recipe in flow.recipes(("x86",)):
            assert recipe.flow is flow and cls.build_recipe is not flows.Flow.build_recipe


FLOAT_LOOK = ModelFlow(
    script=False,
    graph=None,
    module_kinds=frozenset(),
    node_kinds=frozenset(),
    level=0,
    qat=False,
    dynamic_only=False,
    compiled=False,
)


def look(**changes: Any) -> ModelFlow:
    return dataclasses.replace(FLOAT_LOOK, **changes)


@pytest.mark.parametrize(
    ("seen", "name"),
    [
        (look(script=True, module_kinds=frozenset({"quantized"})), "torchscript"),
        (look(graph=ATEN_GRAPH, node_kinds=frozenset({"quantize"})), "pt2e"),
        (look(graph=FX_GRAPH, module_kinds=frozenset({"quantized"})), "fx"),
        (look(module_kinds=frozenset({"torchao_quantized"})), "torchao"),
        (look(module_kinds=frozenset({"dynamic_quantized"}), dynamic_only=True), "dynamic"),
        (look(module_kinds=frozenset({"quantized", "quant_stub"})), "eager"),
        (look(module_kinds=frozenset({"float"})), NO_FLOW.name),
    ],
)
def test_detection_picks_the_first_matching_flow(seen, name):
    assert flows.detect(seen).kind.name == name


def test_rebuild_flow_keeps_qat_and_converted_pt2e_on_a_copy_of_the_subject():
    assert flows.rebuild_flow(look(module_kinds=frozenset({"fake_quant"}), qat=True)) is None
    converted = look(graph=ATEN_GRAPH, node_kinds=frozenset({"quantize", "quantized_op"}))
    assert flows.rebuild_flow(converted) is None
    prepared = look(graph=ATEN_GRAPH, node_kinds=frozenset({"observer"}))
    assert flows.rebuild_flow(prepared) is flows.flow_named("fx")  # rebuilt the FX way
    compiled_fx = look(graph=FX_GRAPH, module_kinds=frozenset({"quantized"}), compiled=True)
    assert flows.rebuild_flow(compiled_fx) is flows.flow_named("eager")
    torchao = look(module_kinds=frozenset({"torchao_quantized"}))
    assert flows.rebuild_flow(torchao) is flows.flow_named("eager")


def _compared_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants that take part in a comparison (==, !=, in, not in; inside a tuple/list/set operand too)
    or a match-case pattern."""
    found: list[tuple[int, str]] = []

    def strings(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for e in node.elts for s in strings(e)]
        return []

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                found += [(node.lineno, s) for s in strings(operand)]
        elif isinstance(node, ast.MatchValue):
            found += [(node.lineno, s) for s in strings(node.value)]
    return found


def test_no_code_outside_flows_compares_a_flow_name():
    names = flow_names()
    offending = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("flows/"):
            continue
        for line, text in _compared_strings(ast.parse(path.read_text(), str(path))):
            if text in names and (relative, text) not in NOT_A_FLOW:
                offending.append(f"qdoctor/{relative}:{line} compares {text!r}")
    assert not offending, "ask the flow (its traits, its FlowKind) instead:\n" + "\n".join(offending)


def test_the_name_check_catches_a_comparison():
    tree = ast.parse(
        'if facts.flow.flow == "pt2e" or x in ("fx", "eager"):\n    pass\nmatch y:\n    case "torchao": pass\n'
    )
    assert [s for _, s in _compared_strings(tree)] == ["pt2e", "fx", "eager", "torchao"]
