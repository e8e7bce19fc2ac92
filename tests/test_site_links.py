"""The static site's link rewriting (tools/build_site.py), without a browser: a lesson's link to
another lesson (`01_x.ipynb`) or to a doc (`docs/sources.md`) points at that page of the site,
a `[TAG]` citation (tdxedu/sources.py) links to its row on sources.html (the row's anchor is
`docs/sources.md`'s `<a id="tag">`), and nothing inside code spans or fenced blocks changes.
The browser test (tests/browser/test_site.py) checks that every such link resolves.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402

PAGES = {
    "01_seamcalls_and_lifecycle.ipynb": "01_seamcalls_and_lifecycle.html",
    "sources.md": "sources.html",
    "README.md": "index.html",
}
TAGS = {"AH-RFC": "ah-rfc", "K616": "k616"}


def rewrite(text: str) -> str:
    return build_site.rewrite_markdown(text, PAGES, TAGS)


def test_lesson_and_doc_links_point_at_site_pages():
    assert rewrite("[next](01_seamcalls_and_lifecycle.ipynb)") == (
        "[next](01_seamcalls_and_lifecycle.html)"
    )
    assert rewrite("[s](../docs/sources.md#ah-rfc)") == "[s](sources.html#ah-rfc)"
    assert rewrite("[r](README.md)") == "[r](index.html)"


def test_other_links_are_left_alone():
    for text in ("[lore](https://lore.kernel.org/r/x@y)", "[x](other.ipynb)", "[m](mailto:a@b.c)"):
        assert rewrite(text) == text


def test_known_tags_link_to_the_sources_page():
    assert rewrite("measured [AH-RFC]; merged [K616].") == (
        "measured [\\[AH-RFC\\]](sources.html#ah-rfc); merged [\\[K616\\]](sources.html#k616)."
    )


def test_unknown_tags_links_and_code_are_not_touched():
    for text in (
        "[NOT-A-TAG]",
        "[AH-RFC](somewhere.html)",
        "`[AH-RFC]`",
        "```\n[AH-RFC] and 01_seamcalls_and_lifecycle.ipynb\n```",
        "[[AH-RFC]]",
    ):
        assert rewrite(text) == text


def test_every_source_has_the_anchor_the_site_links_to():
    """sources.md writes `<a id="{tag.lower()}">` per row: the anchors the site's tag links use."""
    tags = build_site._source_tags()
    text = (ROOT / "docs" / "sources.md").read_text(encoding="utf-8")
    assert tags, "tdxedu.sources.SOURCES is empty"
    missing = [tag for tag, anchor in tags.items() if f'<a id="{anchor}"></a>' not in text]
    assert not missing, f"docs/sources.md has no anchor for {missing}"
