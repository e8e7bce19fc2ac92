"""Lesson 00 (a tour): the exercise checker and its hidden solution."""

from __future__ import annotations

from .exercises import Check, Solution, _wrong
from .exercises import show_solution as _show_solution


# --- 00: predict a count --------------------------------------------------------------------
def teardown_count(memory="64K", vcpus: int = 2, strategy: str = "v6.16",
                   leaf: str = "tdh_mem_page_remove") -> int:
    from ..scenarios.td import RunningTd

    return RunningTd(memory, vcpus, trace=False).teardown(strategy).counts.get(leaf, 0)


def check_teardown_count(answer, *, memory="64K", vcpus: int = 2, strategy: str = "v6.16",
                         leaf: str = "tdh_mem_page_remove") -> Check:
    """How many `leaf` SEAMCALLs does tearing down this TD issue? (predict, then run)"""
    if isinstance(answer, bool) or not isinstance(answer, int):
        return _wrong(f"answer with an int, got {answer!r}")
    real = teardown_count(memory, vcpus, strategy, leaf)
    if answer == real:
        return Check(True, f"{leaf} runs {real} times for a {memory} TD under {strategy}")
    hint = "too many" if answer > real else "too few"
    return _wrong(f"{answer} is {hint}; count the private pages KVM maps, then ask which "
                  "teardown step touches each one")


# --- solutions (hidden in the notebook) -------------------------------------------------------
SOLUTIONS = {
    "teardown_count_64K": 16,
}


def show_solution(name: str) -> Solution:
    return _show_solution(name, SOLUTIONS)


__all__ = ["teardown_count", "check_teardown_count", "SOLUTIONS", "show_solution"]
