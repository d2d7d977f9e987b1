"""The registry, and what every registered rule must have: a complete document that states its default severity and
whether qdoctor applies its fix, and a test file (tests/rules/test_qdNNN.py) naming an end-to-end fixture."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

from qdoctor.diagnose.registry import all_rules, selected
from qdoctor.report.ruledocs import SECTIONS, docs_dir, load_docs, parse

RULE_TESTS = ROOT / "tests" / "rules"
# The first paragraph of every "Fix safety" section says one of these (tests below hold it to the transforms).
APPLIED = "qdoctor applies and verifies this fix"
NOT_APPLIED = "qdoctor does not apply or verify this fix"


def test_every_rule_has_a_document_with_every_section():
    docs = load_docs()
    for r in all_rules():
        assert r.code in docs, f"{r.code} has no rules/{r.code}-{r.name}.md"
        doc = docs[r.code]
        assert doc.name == r.name
        missing = [s for s in SECTIONS if not doc.sections.get(s)]
        assert not missing, f"{r.code} document lacks {missing}"


def test_every_document_belongs_to_a_rule():
    rules = {r.code: r.name for r in all_rules()}
    assert set(load_docs()) <= set(rules)
    # every Markdown file in rules/, also one whose title does not parse (load_docs would skip it silently)
    problems = []
    for path in sorted(docs_dir().glob("*.md")):
        named = re.fullmatch(r"(QD\d{3})-([a-z0-9-]+)\.md", path.name)
        doc = parse(path.read_text(encoding="utf-8"))
        if not named or doc is None:
            problems.append(f"rules/{path.name}: not a rule document (QDnnn-name.md titled '# QDnnn: name')")
        elif named.group(1) not in rules:
            problems.append(f"rules/{path.name}: no rule {named.group(1)} is registered")
        elif (doc.code, doc.name) != named.groups() or doc.name != rules[doc.code]:
            expected = f"{named.group(1)}-{rules[named.group(1)]}"
            problems.append(f"rules/{path.name}: titled '{doc.code}: {doc.name}'; the registry expects {expected}.md")
    assert not problems, "\n".join(problems)


def test_every_document_states_the_registered_default_severity():
    docs = load_docs()
    wrong = {
        r.code: (docs[r.code].severity, r.severity.value)
        for r in all_rules()
        if r.code in docs and docs[r.code].severity != r.severity.value
    }
    assert not wrong, f"'Default severity: ...' under the title differs from the registry (doc, registry): {wrong}"


def test_fix_safety_says_whether_qdoctor_applies_and_verifies_the_fix():
    from qdoctor.prescribe.fixes import all_transforms

    transformed = {t.code for t in all_transforms()}
    docs = load_docs()
    wrong = []
    for r in all_rules():
        first_paragraph = " ".join(docs[r.code].sections.get("Fix safety", "").split("\n\n")[0].split())
        says = (APPLIED in first_paragraph, NOT_APPLIED in first_paragraph)
        has_transform = r.code in transformed
        if says != (has_transform, not has_transform):
            expected = APPLIED if has_transform else NOT_APPLIED
            wrong.append(f"{r.code}: a transform is {'' if has_transform else 'not '}registered: say '{expected}'")
    assert not wrong, "Fix safety, first paragraph:\n" + "\n".join(wrong)


# ------------------------------------------------------------------------------------------------ rule tests


def _named_fixtures(path: Path) -> tuple[list[str], bool]:
    """The module-level FIXTURES list of a rule's test file, and whether any code in the file reads it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    fixtures: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "FIXTURES" for t in node.targets):
            fixtures = list(ast.literal_eval(node.value))
    read = any(isinstance(n, ast.Name) and n.id == "FIXTURES" and isinstance(n.ctx, ast.Load) for n in ast.walk(tree))
    return fixtures, read


def test_every_rule_has_a_test_file_naming_an_end_to_end_fixture():
    problems = []
    for r in all_rules():
        path = RULE_TESTS / f"test_{r.code.lower()}.py"
        if not path.is_file():
            problems.append(f"{r.code}: no tests/rules/{path.name}")
            continue
        fixtures, read = _named_fixtures(path)
        missing = [f for f in fixtures if not (ROOT / f).is_file()]
        if not fixtures:
            problems.append(f'{r.code}: tests/rules/{path.name} names no fixture (FIXTURES = ["fixtures/....py"])')
        elif missing:
            problems.append(f"{r.code}: tests/rules/{path.name} names fixtures that do not exist: {missing}")
        elif not read:
            problems.append(f"{r.code}: no test in tests/rules/{path.name} uses FIXTURES")
    assert not problems, "\n".join(problems)


def test_every_rule_test_file_belongs_to_a_rule():
    codes = {r.code for r in all_rules()}
    files = {p.name: p.stem.removeprefix("test_").upper() for p in RULE_TESTS.glob("test_*.py")}
    assert {name: code for name, code in files.items() if code not in codes} == {}


# ------------------------------------------------------------------------------------------------ selection, README


def test_selection_is_ruff_like():
    assert selected("QD002", None, None)
    assert not selected("QD002", ["QD006"], None)
    assert selected("QD002", ["QD00"], None)
    assert not selected("QD002", None, ["QD00"])
    assert selected("QD002", ["QD002"], ["QD00"])  # the more specific code wins


def test_readme_rule_table_is_generated_from_the_rule_documents():
    from qdoctor.report.ruledocs import readme_table, with_readme_table

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert with_readme_table(readme) == readme, "README rule table is stale: run `python3 dev.py readme`"
    rows = {row.split(" | ")[1]: row.split(" | ")[2] for row in readme_table().splitlines()[2:]}
    assert rows == {r.name: r.severity.value for r in all_rules()}  # the severity column says what the registry says
