"""Every lesson: answers to a "Predict" prompt stay hidden until the learner asks, and every
lesson with a Step button says what one Step is (from the step source's `STEP_IS`).

Read from the executed notebooks (what a learner sees after Run All)."""

import json
from pathlib import Path

import pytest

from tdxedu.lessons.prose import Prose, Reveal, reveal_text, step_is
from tdxedu.steps import ExplorerSource, RemovalSource, SeamcallScriptSource, TdLifeSource

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# Every lesson: its prompts were audited for answers shown under the question.
AUDITED = ["00_tour", "01_seamcalls_and_lifecycle", "02_sept_removal_and_tlb", "03_operand_busy",
           "04_td_teardown", "05_dynamic_pamt", "06_tdp_mmu_roots"]


def _cells(name):
    return json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]


def _src(cell):
    return "".join(cell["source"])


def _outputs_text(cell):
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append((o.get("name", "stdout"), "".join(o["text"])))
        for mime, data in o.get("data", {}).items():
            out.append((mime, "".join(data) if isinstance(data, list) else str(data)))
    return out


def test_every_lesson_is_audited():
    assert sorted(AUDITED) == sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("name", AUDITED)
def test_no_answer_printed_under_a_predict_prompt(name):
    """From a "Predict" prompt to its collapsed answer (`Reveal`) or the next section, code
    cells show widgets or generated prose, never a printed table (a printed answer)."""
    cells = _cells(name)
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown" or "Predict" not in _src(cell):
            continue
        for nxt in cells[i + 1:]:
            if nxt["cell_type"] == "markdown" and _src(nxt).lstrip().startswith("#"):
                break
            if nxt["cell_type"] != "code":
                continue
            outputs = _outputs_text(nxt)
            assert "stdout" not in {k for k, _ in outputs}, (
                f"{name}: cell {cells.index(nxt)} prints under the prompt of cell {i}: "
                "show the answer with a Reveal")
            if any(t.startswith("<details>") for k, t in outputs if k == "text/markdown"):
                break  # the answer was revealed on request; what follows may build on it


def test_every_step_source_says_what_a_step_is():
    for cls in (TdLifeSource, ExplorerSource, SeamcallScriptSource, RemovalSource):
        assert "**One Step**" in str(step_is(cls))
    with pytest.raises(ValueError):
        step_is(object)


@pytest.mark.parametrize("name", sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")))
def test_each_lesson_with_a_stepper_says_what_a_step_is(name):
    """Every Stepper shows its source's STEP_IS under its buttons ("One Step: ..."): the saved
    widget state of each lesson with a Step button carries that line, once per stepper."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    cells = nb["cells"]
    steppers = sum(_src(c).count("_stepper(") for c in cells if c["cell_type"] == "code")
    if not steppers:
        pytest.skip("no Step button in this lesson")
    state = json.dumps(nb.get("metadata", {}).get("widgets", {}))
    assert state.count("One Step:") >= 1, f"{name}: no stepper says what one Step is"


def test_reveal_is_collapsed_and_checkable():
    r = reveal_text("Show the answer", "a  b\n1  2", after="**why**")
    md = r._repr_markdown_()
    assert md.startswith("<details><summary>Show the answer</summary>") and md.endswith(
        "</details>")
    assert "<pre><code>a  b\n1  2</code></pre>" in md and "**why**" in md
    assert "hidden" in repr(r) and "1  2" not in repr(r)
    assert isinstance(r, Prose) and isinstance(r, Reveal)
    assert str(Prose("x") + "y") == "x\n\ny"


def _prose(name):
    lines = (NOTEBOOKS / f"{name}.py").read_text().splitlines()
    return " ".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines)


def test_colour_words_match_the_palette():
    """Where a lesson names a PAMT colour, it is the one the pictures use (the palette of
    tdxedu.viz); the timeline's marks are not described by colour (the legend names them)."""
    palette = pytest.importorskip("tdxedu.viz.palette")
    words = {"green": palette.GREEN, "orange": palette.ORANGE, "blue": palette.BLUE,
             "purple": palette.PURPLE}
    claims = [("00_tour", "first green (`PT_REG`)", "PT_REG", "green"),
              ("01_seamcalls_and_lifecycle", "orange (`PT_TDCX`)", "PT_TDCX", "orange"),
              ("01_seamcalls_and_lifecycle", "blue (`PT_EPT`)", "PT_EPT", "blue"),
              ("01_seamcalls_and_lifecycle", "green (`PT_REG`)", "PT_REG", "green"),
              ("05_dynamic_pamt", "two pixels turn purple (the pair's pages, `PT_PAMT`)",
               "PT_PAMT", "purple")]
    for name, phrase, page_type, word in claims:
        assert phrase in _prose(name), (name, phrase)
        assert palette.PAGE_TYPES[page_type] == words[word], (name, page_type, word)
