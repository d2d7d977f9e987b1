"""The rule documents in rules/ (QDnnn-name.md): one text feeding `qdoctor explain`, SARIF help and the README.

In a wheel they ship as qdoctor/_rule_docs; in a source checkout they are read from the repository's rules/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SECTIONS = (
    "What it does",
    "Why is this bad?",
    "Example",
    "Use instead",
    "Fix safety",
    "Measured effect",
    "References",
)
_TITLE = re.compile(r"^#\s+(QD\d{3})\s*[:\-–]\s*([a-z0-9-]+)\s*$")
# Under the title, before the first section: "Default severity: warning" (and, in words, when findings differ).
_SEVERITY = re.compile(r"^Default severity:\s*(error|warning|info)\b", re.MULTILINE)


@dataclass
class RuleDoc:
    code: str
    name: str
    text: str
    sections: dict[str, str]
    severity: str | None = None  # the default severity the document states ("error", "warning", "info")

    @property
    def summary(self) -> str:
        """First sentence of "What it does"."""
        body = " ".join(self.sections.get("What it does", "").split())
        return body.split(". ")[0].rstrip(".") + "." if body else ""


def docs_dir() -> Path:
    package = Path(__file__).resolve().parents[1]  # qdoctor/
    packaged = package / "_rule_docs"  # rules/ as the wheel ships it (pyproject force-include)
    if packaged.is_dir():
        return packaged
    return package.parent / "rules"


def parse(text: str) -> RuleDoc | None:
    lines = text.splitlines()
    if not lines:
        return None
    title = _TITLE.match(lines[0].strip())
    if not title:
        return None
    sections: dict[str, str] = {}
    current = None
    body: list[str] = []
    preamble = ""
    for line in lines[1:]:
        if line.startswith("## "):
            if current:
                sections[current] = "\n".join(body).strip()
            else:
                preamble = "\n".join(body)
            current, body = line[3:].strip(), []
        else:
            body.append(line)
    if current:
        sections[current] = "\n".join(body).strip()
    severity = _SEVERITY.search(preamble)
    return RuleDoc(
        code=title.group(1),
        name=title.group(2),
        text=text,
        sections=sections,
        severity=severity.group(1) if severity else None,
    )


def load_docs() -> dict[str, RuleDoc]:
    docs = {}
    for path in sorted(docs_dir().glob("QD*.md")):
        doc = parse(path.read_text(encoding="utf-8"))
        if doc:
            docs[doc.code] = doc
    return docs


def get_doc(code: str) -> RuleDoc | None:
    return load_docs().get(code.upper())


README_BEGIN = "<!-- rules-table:begin (generated from rules/*.md by `python3 dev.py readme`) -->"
README_END = "<!-- rules-table:end -->"


def readme_table() -> str:
    """The README's rule table, generated from the rule documents (the one source of rule text)."""
    rows = ["| code | name | severity | what it finds |", "| --- | --- | --- | --- |"]
    for doc in load_docs().values():
        rows.append(
            f"| [{doc.code}](rules/{doc.code}-{doc.name}.md) | {doc.name} | {doc.severity or ''} | {doc.summary} |"
        )
    return "\n".join(rows)


def with_readme_table(readme: str) -> str:
    """README text with the generated table between its markers."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < 0:
        return readme
    return readme[: start + len(README_BEGIN)] + "\n" + readme_table() + "\n" + readme[end:]
