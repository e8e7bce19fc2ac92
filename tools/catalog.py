"""What each lesson says about itself, read from the notebook: number, title, time, objectives,
prerequisites, predict prompts and exercises.

The site's index (tools/build_site.py) and the per-lesson facts of docs/teaching.md
(tools/teaching.py) are generated from this, so they cannot drift from the lessons. It reads
the conventions every lesson follows (README.md, "The lessons"): a first Markdown cell
``# NN · Title`` with ``**What you'll be able to do** (about N minutes)`` and a bullet list,
``**Predict...`` paragraphs under ``## N. Section`` headings, and an ``## Exercises`` section
of ``**N. Title.**`` paragraphs whose code cells call a ``check_*`` function and
``show_solution("key")``. A lesson that breaks a convention is still listed, with what could
not be read left empty, so the site builds on whatever notebooks exist.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

TITLE = re.compile(r"^#\s+(\d+)\s*·\s*(.+?)\s*$", re.M)
MINUTES = re.compile(r"\(about\s+(\d+)\s+minutes?\)")
OBJECTIVES = re.compile(r"\*\*What you'll be able to do\*\*")
NEEDS = re.compile(r"\*\*What you need:?\*\*:?\s*(.+?)(?:\n\s*\n|\Z)", re.S)
SECTION = re.compile(r"^##\s+(.+?)\s*$", re.M)
PREDICT = re.compile(r"^\*\*Predict\b", re.M)
EXERCISE = re.compile(r"^\*\*(\d+)\.\s+(.+?)\*\*\s*(.*)", re.S)
LESSON_REF = re.compile(r"\blesson (\d\d)\b", re.I)


@dataclass
class Exercise:
    number: int
    title: str
    text: str  # the prompt, first sentence(s)
    checkers: list[str] = field(default_factory=list)  # check_* functions its cells call
    solution: str = ""  # show_solution key
    checks: str = ""  # what the checker does (its docstring's first paragraph)


@dataclass
class Predict:
    section: str  # "1. Three actors"
    text: str
    answer: str = ""  # the `*_answer` helper whose collapsed Reveal answers it, if any


@dataclass
class Lesson:
    path: Path
    number: str = ""
    title: str = ""
    minutes: int | None = None
    objectives: list[str] = field(default_factory=list)
    needs: str = ""
    refers_to: list[str] = field(default_factory=list)  # other lessons' numbers it mentions
    predicts: list[Predict] = field(default_factory=list)
    exercises: list[Exercise] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def label(self) -> str:
        return f"{self.number} · {self.title}" if self.number else self.name


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _bullets(block: str) -> list[str]:
    """The top-level `* ` bullets of `block` (continuation lines joined), up to the first
    paragraph that is not part of the list."""
    items: list[str] = []
    for line in block.splitlines():
        if re.match(r"^[*-]\s+", line):
            items.append(re.sub(r"^[*-]\s+", "", line))
        elif items and line.startswith(" ") and line.strip():
            items[-1] += " " + line.strip()
        elif items and not line.strip():
            continue
        elif items:
            break
    return [_one_line(i) for i in items]


def _paragraphs(md: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", md) if p.strip()]


def _calls(code: str) -> list[str]:
    """Names of the functions a code cell calls (by AST; an unparsable cell calls nothing)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    return [
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    ]


def _solution_key(code: str) -> str:
    m = re.search(r"show_solution\(\s*[\"']([^\"']+)[\"']", code)
    return m.group(1) if m else ""


def _exercise_modules(cells: list[dict]) -> list[str]:
    mods = []
    for cell in cells:
        if cell.get("cell_type") == "code":
            mods += re.findall(r"from\s+(tdxedu\.lessons\.\w+_exercises)\s+import", _source(cell))
    return list(dict.fromkeys(mods))


def _checker_doc(modules: list[str], name: str) -> str:
    for mod in modules:
        try:
            fn = getattr(importlib.import_module(mod), name, None)
        except Exception:  # noqa: BLE001 - a broken module must not stop the catalog
            continue
        if fn is not None:
            return _one_line((inspect.getdoc(fn) or "").split("\n\n")[0])
    return ""


def read_lesson(path: Path) -> Lesson:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.get("cells", [])
    lesson = Lesson(path=path)
    md_cells = [(i, _source(c)) for i, c in enumerate(cells) if c.get("cell_type") == "markdown"]
    if md_cells:
        head = md_cells[0][1]
        if m := TITLE.search(head):
            lesson.number, lesson.title = m.group(1), m.group(2)
        if m := MINUTES.search(head):
            lesson.minutes = int(m.group(1))
        if m := OBJECTIVES.search(head):
            lesson.objectives = _bullets(head[m.end() :].split("\n", 1)[-1])
        if m := NEEDS.search(head):  # its first sentence
            lesson.needs = re.split(r"(?<=\.)\s", _one_line(m.group(1)), maxsplit=1)[0]
    text = "\n\n".join(src for _, src in md_cells)
    lesson.refers_to = sorted({n for n in LESSON_REF.findall(text) if n != lesson.number})

    modules = _exercise_modules(cells)
    section = ""
    in_exercises = False
    current: Exercise | None = None
    waiting: list[Predict] = []  # prompts of this section not yet followed by an answer cell
    for cell in cells:
        src = _source(cell)
        if cell.get("cell_type") == "code":
            answers = [c for c in _calls(src) if c.endswith("_answer")]
            if answers and waiting:
                for p in waiting:
                    p.answer = answers[0]
                waiting = []
            if current is not None:
                current.checkers += [
                    c for c in _calls(src) if c.startswith("check_") and c not in current.checkers
                ]
                current.solution = current.solution or _solution_key(src)
            continue
        if cell.get("cell_type") != "markdown":
            continue
        for para in _paragraphs(src):
            if m := SECTION.match(para):
                section = m.group(1).strip()
                in_exercises = section.lower().startswith("exercises")
                waiting = []
                para = para[m.end() :].strip()
                if not para:
                    continue
            if in_exercises and (m := EXERCISE.match(para)):
                current = Exercise(int(m.group(1)), m.group(2).rstrip(". "), _one_line(m.group(3)))
                lesson.exercises.append(current)
            elif in_exercises and re.match(r"^\*\*(Next|Previous)\b", para):
                current = None
            elif PREDICT.match(para) and not in_exercises:
                lesson.predicts.append(Predict(section, _one_line(para)))
                waiting.append(lesson.predicts[-1])
    for ex in lesson.exercises:
        ex.checks = " ".join(_checker_doc(modules, c) for c in ex.checkers)
    return lesson


def lessons(folder: Path = NOTEBOOKS) -> list[Lesson]:
    """Every lesson in `folder`, in file order."""
    return [read_lesson(p) for p in sorted(folder.glob("*.ipynb"))]
