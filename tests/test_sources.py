"""The bibliography (`tdxedu.sources`, `docs/sources.md`, `tdxedu sources`) and the citations
that point into it.

What counts as a citation tag (the rule `cited_tags` applies, with `tdxedu.sources.TAG_RE`):
``[`` + an upper-case letter + upper-case letters/digits and/or ``-part``s of two or more
letters, digits or inner dots + ``]`` (``[K616]``, ``[AH-RFC]``, ``[SC-Apr24]``, ``[V6-05]``,
``[LINUX-6.16]``), where the ``[`` does not follow a letter, digit, ``_`` or ``]`` (so
``list[Frame]`` and ``x[KEY]`` are indexing, not citations) and the ``]`` is not followed by
``(`` (a Markdown link ``[A tour](...)``) or by a regex quantifier (``[KMGT]?``). Lower-case
words (``[None]``), lists with commas or spaces (``[A, B]``), single letters (``[X]``) and
regex classes (``[A-Z0-9]``) never match. Mail subject prefixes (``[PATCH]``, ``[RFC]``) and
the placeholder ``[TAG]`` are words, not citations. In Python (``.py`` files and notebook code
cells) only strings and comments are read, so a list literal of a constant (``[RIDGE]``) is
code, not a citation.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from tdxedu import cli
from tdxedu.sources import (
    BY_TAG,
    KINDS,
    LOCATOR_RE,
    RENAMED,
    SOURCES,
    TAG_RE,
    UnknownTag,
    lookup,
    markdown,
)

ROOT = Path(__file__).resolve().parent.parent
CITING = ("tdxedu", "notebooks", "docs", "README.md", "bench")  # where [TAG]s must resolve
TEXT = ("tdxedu", "notebooks", "docs", "README.md", "bench", "tests", "binder", "dev.py",
        "pyproject.toml")  # where no fact-sheet file, outside path or tracker may be named
SUFFIXES = {".py", ".md", ".ipynb", ".csv", ".cfg", ".txt", ".toml", ".json", ".yml", ""}
NOT_TAGS = {"PATCH", "RFC", "TAG"}
CITATION = re.compile(r"(?<![\w\]])\[(" + TAG_RE.pattern + r")\](?![(?*+{])")


def _files(roots):
    for r in roots:
        p = ROOT / r
        if p.is_file():
            yield p
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if (f.is_file() and f.suffix in SUFFIXES and ".ipynb_checkpoints" not in f.parts
                        and "__pycache__" not in f.parts):
                    yield f


def cited_tags(text: str) -> list[tuple[int, str]]:
    """(line number, tag) of every citation in `text`, by the rule in this module's docstring."""
    out = []
    for m in CITATION.finditer(text):
        if m.group(1) not in NOT_TAGS:
            out.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return out


def python_prose(source: str, first_line: int = 1) -> list[tuple[int, str]]:
    """(line, text) of the strings and comments of Python `source` (the code itself, where
    `[NAME]` is a list, is left out); the whole text when it does not tokenize."""
    prose = []
    kinds = {tokenize.STRING, tokenize.COMMENT}
    if hasattr(tokenize, "FSTRING_MIDDLE"):  # Python 3.12+ splits f-strings into tokens
        kinds.add(tokenize.FSTRING_MIDDLE)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in kinds:
                prose.append((first_line + tok.start[0] - 1, tok.string))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [(first_line, source)]
    return prose


def prose_of(path: Path) -> list[tuple[str, str]]:
    """(where, text) pieces of a file in which citations are looked for."""
    text = path.read_text(errors="replace")
    if path.suffix == ".py":
        return [(f"{n}", t) for n, t in python_prose(text)]
    if path.suffix == ".ipynb":
        out = []
        for i, cell in enumerate(json.loads(text)["cells"]):
            src = "".join(cell.get("source", ""))
            if cell["cell_type"] == "code":
                out += [(f"cell {i}", t) for _, t in python_prose(src)]
            else:
                out.append((f"cell {i}", src))
            for o in cell.get("outputs", []):
                data = o.get("data", {})
                for key in ("text/plain", "text/markdown", "text/html"):
                    out.append((f"cell {i} output", "".join(data.get(key, ""))))
                out.append((f"cell {i} output", "".join(o.get("text", ""))))
        return out
    return [("1", text)]


def _hits(pattern: re.Pattern[str], roots, skip=()) -> list[str]:
    found = []
    for f in _files(roots):
        if f.resolve() in skip:
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            for m in pattern.finditer(line):
                found.append(f"{f.relative_to(ROOT)}:{n}: {m.group(0)!r} in {line.strip()[:90]}")
    return found


# ------------------------------------------------------------------- the tag rule itself
@pytest.mark.parametrize("text, tags", [
    ("Rick Edgecombe's cover letter [RE-P2] says", ["RE-P2"]),
    ("[K616] [AH-RFC], [SC-Apr24]; [V6-05] [LINUX-6.16] [M15-05]",
     ["K616", "AH-RFC", "SC-Apr24", "V6-05", "LINUX-6.16", "M15-05"]),
    ("chain: list[Frame] = x[KEY] + y][K616]", []),            # indexing and type hints
    ("[A tour](notebooks/00_tour.ipynb) [K616](https://x)", []),  # Markdown links
    ("[None] [OK, NO] [X] [ok] [A B]", []),                      # list literals, words
    (r"re.compile(r'[A-Z0-9]+[A-Za-z0-9.]*') ([KMGT]?)", []),   # regex classes
    ("[PATCH] KVM: x [RFC] [TAG]", []),                          # subject prefixes, placeholder
])
def test_citation_rule(text, tags):
    assert [t for _, t in cited_tags(text)] == tags


def test_python_code_is_not_prose_but_its_strings_and_comments_are():
    src = 'w = [0.0] * n + [RIDGE]  # see [K616]\ndef f():\n    """[AH-RFC] says so."""\n'
    got = [(n, t) for n, text in python_prose(src) for _, t in cited_tags(text)]
    assert got == [(1, "K616"), (3, "AH-RFC")]


# ------------------------------------------------------------------------- the data
def test_entries_are_unique_well_formed_and_public():
    assert len(BY_TAG) == len(SOURCES), "duplicate tags"
    for s in SOURCES:
        assert TAG_RE.fullmatch(s.tag) and s.tag not in NOT_TAGS, s.tag
        assert s.kind in KINDS, (s.tag, s.kind)
        assert LOCATOR_RE[s.kind].fullmatch(s.locator), (s.tag, s.locator)
        for kind, loc in s.also:
            assert kind in KINDS and LOCATOR_RE[kind].fullmatch(loc), (s.tag, loc)
        assert s.title and s.supports, s.tag
        assert s.url.startswith("https://"), (s.tag, s.url)
        # A patch or reply cited by its series' cover letter (git send-email's "...-1-...")
        # says so, and then it is a numbered patch or a reply, never the cover itself.
        if s.in_thread:
            assert s.kind == "mail" and "-1-" in s.locator, s.tag
            n = re.search(r"\b(\d+)/\d+\]", s.title)
            assert s.title.startswith("Re:") or (n and int(n.group(1)) > 0), s.tag
    for old, new in RENAMED.items():
        assert new in BY_TAG, (old, new)
        assert old not in BY_TAG, f"[{old}] is both renamed and defined"


def test_lookup_is_forgiving_about_brackets_and_case_and_helpful_when_wrong():
    assert lookup("[K616]") is lookup("k616") is BY_TAG["K616"]
    with pytest.raises(UnknownTag) as e:
        lookup("Kerr")  # a workshop spelling
    assert "[K-ERRNO]" in e.value.message
    with pytest.raises(UnknownTag) as e:
        lookup("AH-RFX")
    assert "closest" in e.value.message and "[AH-RFC]" in e.value.message


def test_docs_sources_md_is_generated_from_the_data():
    doc = ROOT / "docs" / "sources.md"
    assert doc.read_text() == markdown(), "docs/sources.md is stale: run python3 dev.py sources"
    for s in SOURCES:
        assert f"`[{s.tag}]`" in doc.read_text()


# ------------------------------------------------------------------------ citations
def test_every_cited_tag_resolves():
    bad = []
    for f in _files(CITING):
        for where, text in prose_of(f):
            for n, tag in cited_tags(text):
                if tag not in BY_TAG:
                    hint = f" (now [{RENAMED[tag]}])" if tag in RENAMED else ""
                    line = int(where) + n - 1 if where.isdigit() else where
                    bad.append(f"{f.relative_to(ROOT)}:{line}: [{tag}]{hint}")
    assert not bad, "tags not in tdxedu/sources.py:\n" + "\n".join(bad)


def test_nothing_cites_a_file_outside_the_repository():
    sheets = "|".join(["teardown", "contention", "dpamt", "tdp_mmu_roots", "teaching_ecosystem"])
    pattern = re.compile(
        rf"\b(?:{sheets})\.md\b|\.\./shared|(?<![\w/])shared/|(?<![\w/])reference/|fact[ -]sheet"
        r"|\bDESIGN\.md\b|\b(?:td|ct)§|\.md\s*§"
    )
    found = _hits(pattern, TEXT, skip={Path(__file__).resolve()})
    assert not found, "citations of files outside the repository:\n" + "\n".join(found)


def test_code_and_lessons_speak_of_the_project_not_its_tracker():
    pattern = re.compile(
        r"\bissues?\s*#?\d+|\bgithub issues?\b|\btracker\b|\bthe issue\b|\(issue[:)]"
        r"|\bissue's\b|target \(issue\)",
        re.IGNORECASE,
    )
    found = _hits(pattern, TEXT, skip={Path(__file__).resolve()})
    assert not found, "tracker mentions:\n" + "\n".join(found)


# ------------------------------------------------------------------------------ CLI
def test_cli_lists_every_source_one_line_each(capsys):
    assert cli.main(["sources"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SOURCES)
    assert any(line.startswith("[AH-RFC]") and "Defer guest memory removal" in line
               for line in lines)


def test_cli_prints_a_full_entry(capsys):
    assert cli.main(["sources", "AH-RFC"]) == 0
    out = capsys.readouterr().out
    assert "20250313181629.17764-1-adrian.hunter@intel.com" in out
    assert "https://lore.kernel.org/r/20250313181629.17764-1-adrian.hunter@intel.com" in out
    assert "Adrian Hunter" in out and "supports:" in out


def test_cli_unknown_tag_exits_2_with_close_matches():
    r = subprocess.run([sys.executable, "-m", "tdxedu", "sources", "K61"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "no source tagged [K61]" in r.stderr and "[K616]" in r.stderr
    assert "Error" not in r.stderr and "Traceback" not in r.stderr
