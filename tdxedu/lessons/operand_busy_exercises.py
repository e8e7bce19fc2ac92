"""Lesson 03 (TDX_OPERAND_BUSY): the exercise checkers and their hidden solutions.

Each checker runs the learner's answer on the model and judges it with the model: the busy
matrix (`tdxedu.lessons.operand_busy`) and explorer verdicts (`tdxedu.sim.explore`). A checker
returns a `Check` and never raises on a wrong answer; `show_solution(name)` is collapsed until
clicked.
"""

from __future__ import annotations

import contextlib
import inspect

from .exercises import Check, Solution, _wrong
from .exercises import show_solution as _show_solution


# --- 03.1: predict who makes whom BUSY --------------------------------------------------------
def check_busy_prediction(guess) -> Check:
    """`guess` maps (holder, contender) to the short status you expect, e.g.
    ``{("guest ACCEPT of P", "BLOCK P"): "BUSY|RCX"}`` (names as in `busy_matrix()`; "ok" for
    TDX_SUCCESS). Every cell you give is checked against the model."""
    from .operand_busy import CONTENDERS, HOLDERS, busy_matrix

    if not isinstance(guess, dict) or not guess:
        return _wrong("give a dict {(holder, contender): status}, with at least one cell")
    for key in guess:
        if not (isinstance(key, tuple) and len(key) == 2):
            return _wrong(f"{key!r}: keys are (holder, contender) pairs")
        h, c = key
        if h not in HOLDERS:
            return _wrong(f"unknown holder {h!r}; holders: {', '.join(HOLDERS)}")
        if c not in CONTENDERS:
            return _wrong(f"unknown contender {c!r}; contenders: {', '.join(CONTENDERS)}")
    real = busy_matrix()
    norm = {k: str(v).strip().upper().replace(" ", "") for k, v in guess.items()}
    wrong = [(k, v) for k, v in norm.items() if v != real[k[0]][k[1]].upper()]
    if wrong:
        (h, c), v = wrong[0]
        return _wrong(f"{len(wrong)} of {len(guess)} cells differ; e.g. with {h!r} held, "
                      f"{c} does not return {v}: which lock does each one take?")
    return Check(True, f"all {len(guess)} cells match the model")


# --- 03.2: write tdh_do_no_vcpus ---------------------------------------------------------------
@contextlib.contextmanager
def _policy_patched(fn):
    """Use `fn` as KVM's zap-path BUSY handler for a while: it stands in for 6.19's
    `tdh_do_no_vcpus` and for 6.16's written-out retry (`tdxedu.kvm.tdx._zap_seamcall`)."""
    from ..kvm import tdx as kvm_tdx

    orig = kvm_tdx.tdh_do_no_vcpus, kvm_tdx._zap_seamcall
    kvm_tdx.tdh_do_no_vcpus = kvm_tdx._zap_seamcall = fn
    try:
        yield
    finally:
        kvm_tdx.tdh_do_no_vcpus, kvm_tdx._zap_seamcall = orig


POLICY_SCENARIOS = ("busy-accept-no-retry", "busy-zero-step-no-retry")
POLICY_MUST = {"exception": "never", "invariant_violated": "never", "deadlock": "never",
               "kvm_bug": "never", "pages_leaked": "never", "step_bound": "never",
               "completed": "always"}


def policy_verdicts(fn, *, max_steps: int = 40) -> dict[str, dict[str, str]]:
    """Explore the busy scenarios with `fn` as the zap-path BUSY handler."""
    from ..scenarios import registry
    from ..sim.engine import explore

    registry.load_all()
    out = {}
    with _policy_patched(fn):
        for name in POLICY_SCENARIOS:
            sc = registry.get(name)
            ex = explore(sc.build, name=sc.name, max_steps=max_steps)
            out[name] = {c: v.verdict for c, v in ex.verdicts.items()}
            if out[name].get("exception", "never") != "never":
                w = ex.witness("exception")
                lines = (w.error or "").strip().splitlines() if w is not None else []
                out[name]["error"] = lines[-1] if lines else "?"
    return out


def check_busy_policy(fn) -> Check:
    """`fn(kt, name, *args, cpu)` is a generator that issues the SEAMCALL `name` with
    `r = yield from kt.sc(name, *args, cpu=cpu)` and returns the final `Status`, as KVM's
    `tdh_do_no_vcpus` does. It may set `kt.wait_for_sept_zap` and kick every vCPU with
    `yield from kt.kvm.kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)`. The checker
    explores both busy scenarios with it: no KVM_BUG_ON, no leak, no spin, no deadlock."""
    if not callable(fn) or not inspect.isgeneratorfunction(fn):
        return _wrong("pass a generator function (it must `yield from kt.sc(...)`)")
    try:
        v = policy_verdicts(fn)
    except Exception as exc:  # noqa: BLE001 - a learner's bug is a message
        return _wrong(f"exploring with your policy raised {type(exc).__name__}: {exc}")
    for sc, verdicts in v.items():
        if "error" in verdicts:
            return _wrong(f"{sc}: your policy raised in some interleaving: {verdicts['error']}")
        for cond, want in POLICY_MUST.items():
            got = verdicts.get(cond)
            if got != want:
                hint = {"kvm_bug": "a BUSY still reaches KVM_BUG_ON: who holds the lock, and "
                        "how do you make them let go?",
                        "step_bound": "KVM can spin forever with mmu_lock held: bound it",
                        "deadlock": "some actor waits forever: is every flag you set cleared?",
                        "completed": "not every run completes"}.get(cond, "")
                return _wrong(f"{sc}: {cond} is {got}, must be {want}. {hint}".strip())
    return Check(True, "kvm_bug never, no leak, no spin, no deadlock in every interleaving "
                 "of both busy scenarios")


# --- solutions (hidden in the notebook) -------------------------------------------------------
def _solution_busy_policy(kt, name, *args, cpu):
    from tdxedu.kvm.kvm import KVM_REQ_OUTSIDE_GUEST_MODE
    from tdxedu.tdx import status as st

    r = yield from kt.sc(name, *args, cpu=cpu)
    if not r.status.matches(st.TDX_OPERAND_BUSY):
        return r.status
    kt.wait_for_sept_zap = True  # tdx_vcpu_run() now returns without VP.ENTER
    yield from kt.kvm.kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)  # kick, wait
    r = yield from kt.sc(name, *args, cpu=cpu)  # exactly one retry
    kt.wait_for_sept_zap = False
    return r.status


SOLUTIONS = {
    "busy_prediction": {("guest ACCEPT of P", "BLOCK P"): "BUSY|RCX",
                        ("VP.ENTER 0-step check", "AUG"): "BUSY|SEPT",
                        ("VP.ENTER 0-step check", "TRACK"): "ok",
                        ("TRACK", "VP.ENTER vCPU 1"): "BUSY|TD_EPOCH",
                        ("vCPU 0 in the guest", "TRACK"): "ok"},
    "busy_policy": _solution_busy_policy,
}


def show_solution(name: str) -> Solution:
    return _show_solution(name, SOLUTIONS)


__all__ = ["check_busy_prediction", "check_busy_policy", "policy_verdicts", "POLICY_SCENARIOS",
           "POLICY_MUST", "SOLUTIONS", "show_solution"]
