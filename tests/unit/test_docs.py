"""The documentation stays walkable: a README short enough to read in one sitting, and
no relative link in it or in docs/ that leads nowhere (a moved file, a renamed heading)."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README_MAX_LINES = 260
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """Heading anchors as GitHub makes them: lower case, punctuation dropped, spaces as
    hyphens, ``-1``, ``-2``... on repeats."""
    seen: Counter[str] = Counter()
    out = set()
    for line in FENCE.sub("", text).splitlines():
        match = re.match(r"#{1,6} +(.+?) *#* *$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        out.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return out


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_readme_stays_short():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_the_docs_pages_exist_and_link_from_the_readme():
    linked = {(REPO / t.split("#")[0]).resolve() for t in relative_links(REPO / "README.md") if t.startswith("docs/")}
    pages = set(PAGES[1:])
    assert pages, "docs/ holds no page"
    assert pages <= linked, f"README.md links to none of {sorted(p.name for p in pages - linked)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_and_heading(page):
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_relative_to(REPO) or not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file.read_text()):
            broken.append(f"{target}: no heading #{fragment} in {file.relative_to(REPO)}")
    assert not broken, broken


def test_the_link_checker_sees_a_broken_link_and_knows_github_anchors():
    text = "# Escalation figures (`badbuzz bench-alerts`)\n## Runbook\n## Runbook\n```\n# not a heading\n```\n"
    assert anchors(text) == {"escalation-figures-badbuzz-bench-alerts", "runbook", "runbook-1"}
    assert LINK.findall(prose("see [a](docs/x.md#y), `[b](not/a/link.md)` and [c](https://example.org)")) == [
        "docs/x.md#y", "https://example.org",
    ]
