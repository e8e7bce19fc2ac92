"""docs/teaching.md stays in step with the lessons: its per-lesson part (objectives, time,
prerequisites, predict prompts, exercises and their checkers) is what tools/teaching.py
generates from the notebooks today, and every lesson states what the site's index and the
guide need (README.md, "The lessons": objectives, and 20-40 minutes each).

If this fails after a lesson edit: `python3 dev.py teaching`, then commit docs/teaching.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import catalog  # noqa: E402
import teaching  # noqa: E402

LESSONS = catalog.lessons()


def test_teaching_md_matches_the_lessons():
    page = teaching.TEACHING.read_text(encoding="utf-8")
    want = teaching.splice(page, teaching.generate(LESSONS))
    assert page == want, (
        "docs/teaching.md's per-lesson part is out of date with notebooks/: "
        "run `python3 dev.py teaching` and commit docs/teaching.md"
    )


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda les: les.name)
def test_lesson_states_objectives_and_time(lesson):
    assert lesson.number and lesson.title, f"{lesson.name}: no '# NN · Title' heading"
    assert lesson.objectives, f"{lesson.name}: no bullets after **What you'll be able to do**"
    assert lesson.minutes is not None and 20 <= lesson.minutes <= 40, (
        f"{lesson.name}: '(about N minutes)' missing or outside 20-40: {lesson.minutes}"
    )
    assert lesson.predicts, f"{lesson.name}: no **Predict** prompt"
    checked = [ex for ex in lesson.exercises if ex.checkers]
    assert checked, f"{lesson.name}: no exercise whose cell calls a check_* function"
    for ex in checked:
        assert ex.checks, f"{lesson.name}: {ex.checkers} has no docstring saying what it checks"


def test_generated_part_names_every_lesson_and_checker():
    text = teaching.TEACHING.read_text(encoding="utf-8")
    for lesson in LESSONS:
        assert f"### {lesson.label}" in text
        for ex in lesson.exercises:
            for checker in ex.checkers:
                assert f"`{checker}`" in text
