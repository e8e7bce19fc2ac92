"""Lesson 06 (TDP MMU roots): the exercise checkers and their hidden solutions.

Every checker runs the learner's answer on the model and judges it with the model: explorer
verdicts or the TDP MMU invariant checker (`tdxedu.kvm.tdp_mmu_invariants`). A checker returns a
`Check` and never raises on a wrong
answer; `show_solution(name)` is collapsed until clicked.
"""

from __future__ import annotations

import inspect
import random

from ..sim.engine import explore
from .exercises import Check, Solution, _wrong
from .tdp_mmu_roots import BROKEN_CASES, broken_witness


# --- exercise 06.1: predict the storm ----------------------------------------------------------
def check_storm_allocations(answer, *, policy: str = "v6.3", n: int = 1000) -> Check:
    """Root allocations after `n` SMI/RSM round trips on a 1-vCPU VM under `policy`."""
    from ..scenarios.roots import smm_storm

    if isinstance(answer, bool) or not isinstance(answer, int):
        return _wrong(f"answer with an int, got {answer!r}")
    real = smm_storm(policy, n)["root_allocations"]
    if answer == real:
        return Check(True, f"{real} root allocations under {policy} after {n} round trips")
    return _wrong(f"{answer} is too {'many' if answer > real else 'few'}: count the roots "
                  "alive before the first SMI, then what each SMI and each RSM costs")


# --- exercise 06.2: find the interleaving ------------------------------------------------------
def check_resurrection_schedule(script) -> Check:
    """A schedule (actor names) of `roots-last-put-race-v6.3` in which the reader's final
    iterator step puts the root's last reference under the read lock, so v6.3 resurrects it
    (condition `resurrected_under_read_lock`), with every root invariant holding."""
    from ..scenarios import registry
    from ..sim.engine import run_script

    if isinstance(script, str):
        script = [s.strip() for s in script.replace(",", " ").split() if s.strip()]
    try:
        script = list(script)
    except TypeError:
        return _wrong("answer with a list of actor names, e.g. ['reader0', 'vcpu0', ...]")
    if not all(isinstance(s, str) for s in script):
        return _wrong("answer with a list of actor names (strings)")
    sc = registry.get("roots-last-put-race-v6.3")
    try:
        r = run_script(sc.build, script, max_steps=sc.max_steps)
    except Exception as exc:  # noqa: BLE001 - a bad name is a message
        return _wrong(f"{type(exc).__name__}: {exc}")
    if r.outcome in ("invariant_violated", "exception"):
        return _wrong(f"the run ended with {r.outcome}: {(r.violations or [r.error])[0]}")
    if not r.conditions.get("resurrected_under_read_lock"):
        return _wrong("in this schedule the reader's put is not the last one: let vcpu0 drop "
                      "its reference (SMI) while the reader still holds the root")
    return Check(True, f"{r.steps} steps; the reader's put hit 0 on a valid root under the "
                 "read lock and v6.3 resurrected it (invalid, count 1, zap queued)")


# --- exercise 06.3: write invariant 2 ----------------------------------------------------------
def check_inv2(fn) -> Check:
    """`fn(kvm) -> list[str]`: your check of invariant 2 ("no free of a valid root: a
    valid root keeps a reference", v6.4+). It must fire on `broken-free-valid-root` at the
    step the model's checker fires, and never on correct v6.16 runs."""
    from ..scenarios.roots import memslot_update_world, smm_storm_world, vm_destroy_world
    from ..sim.engine import Execution

    if not callable(fn):
        return _wrong("pass a function that takes the kvm and returns a list of messages")

    def call(kvm):
        out = fn(kvm)
        if out is None:
            return []
        if isinstance(out, str) or not all(isinstance(m, str) for m in out):
            raise TypeError("return a list of strings (empty when the invariant holds)")
        return list(out)

    w = broken_witness("broken-free-valid-root")
    ex = Execution(BROKEN_CASES["broken-free-valid-root"](), 300, check="end")
    caught = None
    try:
        for i, actor in enumerate(w):
            ex.step(actor)
            if call(ex.world.kvm):
                caught = i + 1
                break
    except Exception as exc:  # noqa: BLE001
        return _wrong(f"your function raised {type(exc).__name__}: {exc}")
    if caught is None:
        return _wrong(f"the broken variant freed a valid root at step {len(w)} and your check "
                      "said nothing: look at roots in kvm.arch.tdp_mmu_live")
    if caught < len(w):
        return _wrong(f"your check fired at step {caught}, before anything went wrong: "
                      "a valid root with a reference is fine")
    for build in (lambda: smm_storm_world("v6.16", 1, 2),
                  lambda: memslot_update_world("v6.16", 2, 2),
                  lambda: vm_destroy_world("v6.16", 2, 1),
                  lambda: memslot_update_world("v6.16", 2, 2, td=True)):
        for seed in range(3):
            try:
                world = build()
                e = Execution(world, 300, check="end")
                while not e.terminal():
                    e.step(random.Random(seed * 1000 + len(e.choices)).choice(e.runnable()))
                    msgs = call(world.kvm)
                    if msgs:
                        return _wrong(f"false alarm on a correct v6.16 run at step "
                                      f"{len(e.choices)}: {msgs[0]}")
            except Exception as exc:  # noqa: BLE001
                return _wrong(f"your function raised {type(exc).__name__}: {exc}")
    return Check(True, f"caught broken-free-valid-root at step {caught} (as the model's inv2 "
                 "does), silent on 12 correct v6.16 runs")


# --- solutions (hidden in the notebook) -------------------------------------------------------
def _solution_inv2(kvm):
    roots = list(kvm.arch.tdp_mmu_roots) + list(kvm.arch.tdp_mmu_live.values())
    return [f"inv2: valid {r} has refcount {r.tdp_mmu_root_count}" for r in roots
            if not r.invalid and r.tdp_mmu_root_count <= 0]


SOLUTIONS = {
    "storm_v63_1000": 2001,
    "resurrection_schedule": None,  # filled below from the explorer's witness
    "inv2": _solution_inv2,
}


def _resurrection_witness() -> list[str]:
    from ..scenarios import registry

    sc = registry.get("roots-last-put-race-v6.3")
    e = explore(sc.build, name=sc.name, max_steps=sc.max_steps)
    return list(e.verdicts["resurrected_under_read_lock"].witness)


def show_solution(name: str) -> Solution:
    if name not in SOLUTIONS:
        raise KeyError(f"no solution named {name!r}; known: {', '.join(sorted(SOLUTIONS))}")
    sol = SOLUTIONS[name]
    if name == "resurrection_schedule":
        sol = _resurrection_witness()
    body = inspect.getsource(sol) if callable(sol) else (
        repr(sorted(sol)) if isinstance(sol, set) else sol if isinstance(sol, str) else repr(sol))
    return Solution(name, body)


__all__ = ["check_storm_allocations", "check_resurrection_schedule", "check_inv2", "SOLUTIONS",
           "show_solution"]
