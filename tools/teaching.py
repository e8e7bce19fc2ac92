"""Regenerate the per-lesson part of docs/teaching.md from the lessons: `python3 dev.py teaching`.

Everything between the BEGIN and END markers in docs/teaching.md is written here from what
tools/catalog.py reads in the notebooks (objectives, time, prerequisites, predict prompts,
exercises and their checkers); the rest of the page is written by hand.
tests/test_teaching.py fails when the two disagree, so a lesson edit that changes an objective,
a time, a prompt or an exercise is followed by `python3 dev.py teaching`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import catalog  # noqa: E402 - tools/ is not a package

TEACHING = catalog.ROOT / "docs" / "teaching.md"
BEGIN = "<!-- BEGIN per-lesson facts: generated from the notebooks by `python3 dev.py teaching` -->"
END = "<!-- END per-lesson facts -->"
PROMPT_CHARS = 240


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short(text: str, limit: int = PROMPT_CHARS) -> str:
    """The prompt without its bold lead-in, cut at a sentence end near `limit`."""
    text = re.sub(r"^\*\*[^*]+\*\*\s*", "", text)
    if len(text) <= limit:
        return text
    cut = max(text.rfind(". ", 0, limit), text.rfind("? ", 0, limit))
    return text[: cut + 1] + " ..." if cut > 40 else text[:limit].rstrip() + " ..."


def _section_no(section: str) -> str:
    m = re.match(r"(\d+)\.", section)
    return f"§{m.group(1)}" if m else section


def prerequisites(lesson: catalog.Lesson, numbers: set[str]) -> str:
    parts = []
    if lesson.needs:
        parts.append(lesson.needs)
    before = sorted(set(lesson.refers_to) & numbers)
    if lesson.number and lesson.number != "00" and "00" in numbers:
        before = sorted({"00", *before})
    if before:
        refs = ", ".join(f"lesson {n}" for n in before)
        why = " (lesson 00 teaches the widgets)" if "00" in before else ""
        parts.append(f"Builds on {refs}{why}.")
    return " ".join(parts) or "None beyond Python."


def lesson_block(lesson: catalog.Lesson, numbers: set[str]) -> str:
    out = [f"### {lesson.label}", ""]
    time = f"about {lesson.minutes} minutes" if lesson.minutes else "not stated in the lesson"
    out += [f"[`notebooks/{lesson.path.name}`](../notebooks/{lesson.path.name}) · {time}", ""]
    out += ["**Objectives** (the learner will be able to):", ""]
    out += [f"* {o}" for o in lesson.objectives] or ["* (the lesson states none)"]
    out += ["", f"**Prerequisites:** {prerequisites(lesson, numbers)}", ""]
    if lesson.predicts:
        out += [
            "**Predict prompts:**",
            "",
            "| where | prompt | answer |",
            "|---|---|---|",
        ]
        for p in lesson.predicts:
            answer = (
                f"`{p.answer}(...)`, collapsed"
                if p.answer
                else "the widget or output after the prompt"
            )
            out.append(f"| {_section_no(p.section)} | {_cell(_short(p.text))} | {answer} |")
        out.append("")
    if lesson.exercises:
        out += [
            "**Exercises:**",
            "",
            "| # | exercise | how it is checked | solution |",
            "|---|---|---|---|",
        ]
        for ex in lesson.exercises:
            if ex.checkers:
                checked = ", ".join(f"`{c}`" for c in ex.checkers)
                checked += f": {ex.checks}" if ex.checks else ""
            else:
                checked = "not checked: discussion (or run the code it names)"
            solution = f'`show_solution("{ex.solution}")`' if ex.solution else "none"
            out.append(f"| {ex.number} | {_cell(ex.title)} | {_cell(checked)} | {solution} |")
        out.append("")
    return "\n".join(out)


def generate(lessons: list[catalog.Lesson]) -> str:
    numbers = {les.number for les in lessons if les.number}
    total = sum(les.minutes or 0 for les in lessons)
    head = [
        "| lesson | time | predict prompts | exercises (checked) |",
        "|---|---|---|---|",
    ]
    for les in lessons:
        checked = sum(1 for ex in les.exercises if ex.checkers)
        head.append(
            f"| {_cell(les.label)} | {les.minutes or '?'} min | {len(les.predicts)} | "
            f"{len(les.exercises)} ({checked}) |"
        )
    head.append(
        f"| all {len(lessons)} lessons | {total} min | "
        f"{sum(len(les.predicts) for les in lessons)} | "
        f"{sum(len(les.exercises) for les in lessons)} "
        f"({sum(1 for les in lessons for ex in les.exercises if ex.checkers)}) |"
    )
    blocks = [lesson_block(les, numbers) for les in lessons]
    return "\n".join([BEGIN, "", *head, "", *blocks, END])


def splice(page: str, generated: str) -> str:
    """`page` with the text between the markers replaced by `generated`."""
    start, end = page.find(BEGIN), page.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{TEACHING}: the BEGIN/END markers are missing")
    return page[:start] + generated + page[end + len(END) :]


def main() -> int:
    page = TEACHING.read_text(encoding="utf-8")
    new = splice(page, generate(catalog.lessons()))
    if new != page:
        TEACHING.write_text(new, encoding="utf-8")
        print(f"updated {TEACHING.relative_to(catalog.ROOT)}")
    else:
        print(f"{TEACHING.relative_to(catalog.ROOT)} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
