"""The registry, and that every registered rule has a complete document."""

from qdoctor.diagnose.registry import all_rules, selected
from qdoctor.report.ruledocs import SECTIONS, load_docs


def test_every_rule_has_a_document_with_every_section():
    docs = load_docs()
    for r in all_rules():
        assert r.code in docs, f"{r.code} has no rules/{r.code}-{r.name}.md"
        doc = docs[r.code]
        assert doc.name == r.name
        missing = [s for s in SECTIONS if not doc.sections.get(s)]
        assert not missing, f"{r.code} document lacks {missing}"


def test_every_document_belongs_to_a_rule():
    codes = {r.code for r in all_rules()}
    assert set(load_docs()) <= codes


def test_selection_is_ruff_like():
    assert selected("QD002", None, None)
    assert not selected("QD002", ["QD006"], None)
    assert selected("QD002", ["QD00"], None)
    assert not selected("QD002", None, ["QD00"])
    assert selected("QD002", ["QD002"], ["QD00"])  # the more specific code wins


def test_readme_rule_table_is_generated_from_the_rule_documents():
    from conftest import ROOT

    from qdoctor.report.ruledocs import with_readme_table

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert with_readme_table(readme) == readme, "README rule table is stale: run `python3 dev.py readme`"
