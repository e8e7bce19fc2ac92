"""Lesson 02 (Secure-EPT removal and TLB tracking): the exercise checkers and their hidden
solutions."""

from __future__ import annotations

from ..tdx.pamt import PageType
from .exercises import Check, Solution, _wrong
from .exercises import show_solution as _show_solution


# --- 02: remove a private page from a running TD ------------------------------------------------
def check_removal_order(ops) -> Check:
    """An order of block / track / kick / reenter / remove / wbinvd / unblock that removes the
    page from the running TD and leaves it safe for the host to reuse."""
    from ..steps import RemovalSource

    try:
        lab = RemovalSource(ops)
    except (ValueError, TypeError) as exc:
        return _wrong(str(exc))
    while not lab.done:
        lab.step()
    return _judge_removal(lab)


def check_remove_page(fn) -> Check:
    """`fn(lab)` removes the private page at `lab.gpa` from a TD whose two vCPUs are in the
    guest, using `lab.do("block")`, `lab.do("track")`, `lab.do("kick")`, ... or the module
    directly (`lab.module`, `lab.tdr`, `lab.gpa`, `lab.host_lp`)."""
    from ..steps import RemovalSource

    if not callable(fn):
        return _wrong("pass a function that takes the lab")
    lab = RemovalSource(["block"], vcpus=2)
    try:
        fn(lab)
    except Exception as exc:  # noqa: BLE001 - a learner's bug is a message
        return _wrong(f"your function raised {type(exc).__name__}: {exc}")
    return _judge_removal(lab)


def _judge_removal(lab) -> Check:
    from ..steps.seamcalls import _is_error
    from ..trace import MODULE_SOURCE

    errs = [e for e in lab.trace if e.source == MODULE_SOURCE and e.status and
            _is_error(e.status)]
    if errs:
        e = errs[0]
        return _wrong(f"{e.op} returned {e.status}")
    bad = lab.module.check_invariants()
    if bad:
        return _wrong("the module's invariants fail: " + "; ".join(bad))
    if lab.page_state() != "FREE":
        return _wrong(f"the page is still {lab.page_state()} in the S-EPT")
    hpa = lab.built.private[lab.gpa]
    if lab.module.pamt.page_type(hpa) != PageType.PT_NDA:
        return _wrong("the S-EPT entry is gone but the PAMT still assigns the page")
    if lab.module.has_dirty_lines(hpa) is not None:
        return _wrong("the page is back in the host's hands with dirty cache lines under "
                      "the TD's key: what must the host do before reusing it?")
    return Check(True, "page removed, tracked, written back; invariants hold")


# --- solutions (hidden in the notebooks) ---------------------------------------------------------
def _solution_remove_page(lab):
    lab.do("block")  # BLOCK: BEPOCH = TD_EPOCH
    lab.do("track")  # TRACK: TD_EPOCH++
    lab.do("kick")  # every vCPU of the old epoch leaves the guest
    lab.do("remove")  # tracked, so REMOVE succeeds
    lab.do("wbinvd")  # flush the page's lines under the HKID


SOLUTIONS = {
    "removal_order": ["block", "track", "kick", "remove", "wbinvd"],
    "remove_page": _solution_remove_page,
}


def show_solution(name: str) -> Solution:
    return _show_solution(name, SOLUTIONS)


__all__ = ["check_removal_order", "check_remove_page", "SOLUTIONS", "show_solution"]
