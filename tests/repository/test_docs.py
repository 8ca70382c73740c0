"""The README stays a front page (at most 150 lines) with a map to docs/, and every relative
link of the README and of docs/*.md reaches a file that exists and, with an anchor, a heading
that it has (GitHub's anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

README_LINES = 150
# Linked before it exists: another piece of work writes it (issue 23, the path from an empty
# Google Cloud project). Once it exists, links into it are checked like any other.
PENDING = {REPO / "docs" / "deploy-from-zero.md"}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def prose(path: Path) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(path: Path) -> set[str]:
    """GitHub's anchor of each heading: lower case, punctuation dropped, spaces to hyphens,
    a repeated one numbered."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(path):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links() -> list[tuple[str, str]]:
    return [
        (str(path.relative_to(REPO)), target)
        for path in documents()
        for line in prose(path)
        for target in LINK.findall(line)
        if not re.match(r"[a-z]+:", target)
    ]


def test_the_readme_is_a_front_page() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_LINES, f"README.md has {len(lines)} lines; move some to docs/"


def test_the_readme_maps_every_document() -> None:
    readme = (REPO / "README.md").read_text()
    for path in sorted((REPO / "docs").glob("*.md")) + sorted(PENDING):
        assert f"(docs/{path.name})" in readme, f"the README does not link {path.name}"


@pytest.mark.parametrize(("doc", "target"), links())
def test_relative_link_reaches_a_file_and_heading(doc: str, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    source = REPO / doc
    linked = (source.parent / file_part).resolve() if file_part else source
    if linked in PENDING and not linked.exists():
        return
    assert linked.exists(), f"{doc}: no such file {file_part}"
    if anchor:
        assert anchor in anchors(linked), f"{doc}: {linked.name} has no heading #{anchor}"


def test_links_are_checked() -> None:
    assert len(links()) >= 40
