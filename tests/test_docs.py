"""The README and the pages it links to: every relative link lands on a file of the repository
and, with a #fragment, on a heading of that page; every page of docs/ is linked from the README."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "chart" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^ *```.*?^ *```$", re.M | re.S)
LINK = re.compile(r"\]\(([^()\s]+)\)")


def prose(page: Path) -> str:
    """PAGE's text without its fenced blocks, where `](` is code, not a link."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def anchors(page: Path) -> set[str]:
    """The fragments GitHub gives PAGE's headings: lower case, punctuation dropped, spaces to
    `-`, and a repeated one numbered."""
    found, counts = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *$", prose(page), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(f"{slug}-{counts[slug]}" if slug in counts else slug)
        counts[slug] = counts.get(slug, 0) + 1
    return found


def relative_links(page: Path) -> list[str]:
    """PAGE's links that point into the repository (no scheme, no mail address)."""
    return [target for target in LINK.findall(prose(page)) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists() or ROOT not in (resolved, *resolved.parents):
            broken.append(f"{target}: no such file in the repository")
        elif fragment and fragment not in anchors(resolved):
            broken.append(f"{target}: {resolved.relative_to(ROOT)} has no heading #{fragment}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_links_every_docs_page() -> None:
    linked = {
        (ROOT / target.partition("#")[0]).resolve() for target in relative_links(ROOT / "README.md")
    }
    assert set(PAGES[2:]) <= linked


def test_anchors_are_githubs() -> None:
    """The fragments GitHub makes of this project's kinds of headings."""
    page = ROOT / "docs" / "pipeline.md"
    assert {"cicd-catalog-component", "what-the-agents-ci_access-must-allow"} <= anchors(page)


def test_the_readme_layout_names_paths_that_exist() -> None:
    """Each path of the README's layout table exists; a bare name after a path (`probe.py`)
    is in that path's folder."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("| path | what it is |\n", 1)[1].split("\n\n", 1)[0]
    missing = []
    for row in table.splitlines()[1:]:
        names = re.findall(r"`([^`]+)`", row.split(" | ", 1)[0])
        folder = (ROOT / names[0]).parent
        missing += [
            name for name in names if not ((ROOT / name).exists() or (folder / name).exists())
        ]
    assert not missing, f"the README's layout names what is not there: {missing}"


def test_the_readmes_quoted_references_name_a_heading_or_a_link() -> None:
    """`see "Preflight"` in the README (the inputs table says it so) finds a heading of the
    README or a link by that name, which leads to the page that now has the section."""
    text = prose(ROOT / "README.md")
    headings = re.findall(r"^#{1,6} +(.+?) *$", text, re.M)
    link_texts = re.findall(r"\[([^\]]+)\]\(", text)
    names = [*headings, *link_texts]
    quoted = re.findall(r'\bsee "([^"]+)"', text)
    assert quoted
    assert [name for name in quoted if not any(n.startswith(name) for n in names)] == []
