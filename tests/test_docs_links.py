"""Every relative link and image in the README, docs/ and experiments/ notes points at a file of the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "experiments").rglob("*.md"))]


def _relative_links(text: str) -> list[str]:
    return [t for t in LINK.findall(text) if "://" not in t and not t.startswith(("#", "mailto:"))]


def test_link_pattern_finds_links_and_skips_urls():
    text = "see [a](docs/a.md#x), ![b](img/b.png \"title\"), [c](https://x.org/c) and [d](#anchor)"
    assert _relative_links(text) == ["docs/a.md#x", "img/b.png"]


def test_relative_links_resolve():
    links = [(md, t) for md in _markdown_files() for t in _relative_links(md.read_text(encoding="utf-8"))]
    assert len(links) >= 20  # the docs do link to one another and to figures
    missing = [f"{md.relative_to(ROOT)}: {t}" for md, t in links if not (md.parent / t.split("#")[0]).exists()]
    assert not missing, missing
