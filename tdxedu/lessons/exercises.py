"""What every lesson's exercises share: a `Check` (the verdict on a learner's answer) and a
`Solution` (a hidden solution, shown collapsed).

Every checker runs the learner's answer on the model and judges it with the model itself: the
module's status codes, its invariant checker (`TdxModule.check_invariants`) and KVM's leak
accounting. A checker returns a `Check` (`.ok`, `.message`); it never raises on a wrong
answer. `show_solution(name, solutions)` returns a collapsed `<details>` block (hidden until
clicked); each lesson's exercise module has a `show_solution(name)` over its own solutions.
"""

from __future__ import annotations

import html
import inspect
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    ok: bool
    message: str

    def __str__(self) -> str:
        return ("correct: " if self.ok else "not yet: ") + self.message

    def __repr__(self) -> str:
        return str(self)

    def __bool__(self) -> bool:
        return self.ok


def _wrong(msg: str) -> Check:
    return Check(False, msg)


class Solution:
    """Displays as a collapsed `<details>` block; its text form does not give it away."""

    def __init__(self, name: str, body: str):
        self.name, self.body = name, body

    def _repr_html_(self) -> str:
        return (f"<details><summary>Show the solution ({html.escape(self.name)})</summary>"
                f"<pre>{html.escape(self.body)}</pre></details>")

    def __repr__(self) -> str:
        return f"<solution {self.name}: hidden, click to show>"


def show_solution(name: str, solutions: dict) -> Solution:
    """The hidden solution `name` from `solutions` (a lesson's `SOLUTIONS`)."""
    if name not in solutions:
        raise KeyError(f"no solution named {name!r}; known: {', '.join(sorted(solutions))}")
    sol = solutions[name]
    body = inspect.getsource(sol) if callable(sol) else repr(sol)
    return Solution(name, body)


__all__ = ["Check", "Solution", "show_solution"]
