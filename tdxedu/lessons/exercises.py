"""Exercise checkers for the lessons, and their hidden solutions.

Every checker runs the learner's answer on the model and judges it with the model itself: the
module's status codes, its invariant checker (`TdxModule.check_invariants`) and KVM's leak
accounting. A checker returns a `Check` (`.ok`, `.message`); it never raises on a wrong
answer. `show_solution(name)` returns a collapsed `<details>` block (hidden until clicked).
"""

from __future__ import annotations

import html
import inspect
from dataclasses import dataclass

from ..tdx.pamt import PageType
from ..tdx.status import decode


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


# --- 00: predict a count --------------------------------------------------------------------
def teardown_count(memory="64K", vcpus: int = 2, strategy: str = "v6.16",
                   leaf: str = "tdh_mem_page_remove") -> int:
    from .td import RunningTd

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


# --- 01: decode a status, order the build -----------------------------------------------------
def check_decode(value: int, answer: str) -> Check:
    """Name the status in RAX the way the kernel prints it, e.g.
    ``"TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT"``."""
    if not isinstance(answer, str):
        return _wrong(f"answer with a string such as 'TDX_SUCCESS', got {answer!r}")
    real = str(decode(value))
    norm = " | ".join(p.strip() for p in answer.upper().split("|"))
    if norm == real:
        return Check(True, f"{value:#018x} = {real}")
    if norm.split(" | ")[0] == real.split(" | ")[0]:
        return _wrong("the status class is right; now name the operand id in bits 31:0")
    return _wrong("look at bits 63:32 for the status and bits 31:0 for the operand id")


def run_build(calls):
    from ..widgets.sources import SeamcallScriptSource

    src = SeamcallScriptSource(calls)
    while not src.done:
        src.step()
    return src


def check_build_order(calls) -> Check:
    """Order SEAMCALLs so the TD is RUNNABLE and its vCPU has entered, with no error."""
    from ..tdx.td import Lifecycle, OpState

    try:
        src = run_build(calls)
    except (ValueError, TypeError) as exc:
        return _wrong(str(exc))
    errors = src.errors()
    if errors:
        e = errors[0]
        return _wrong(f"{e.op} failed with {e.status}: what must happen before it?")
    bad = src.module.check_invariants()
    if bad:
        return _wrong("the module's invariants fail: " + "; ".join(bad))
    td = src.module.tds.get(src.tdr)
    if td is None or td.lifecycle != Lifecycle.TD_KEYS_CONFIGURED or td.tdcs is None \
            or td.tdcs.op_state != OpState.RUNNABLE:
        return _wrong("no error, but the TD is not RUNNABLE yet: which call is missing?")
    if not src.vp or not src.module.vcpus[src.vp].in_guest:
        return _wrong("the TD is RUNNABLE but no vCPU is in the guest yet")
    return Check(True, f"{len(src.calls)} calls, TD RUNNABLE, vCPU in the guest, "
                 "invariants hold")


# --- 02: remove a private page from a running TD ------------------------------------------------
def check_removal_order(ops) -> Check:
    """An order of block / track / kick / reenter / remove / wbinvd / unblock that removes the
    page from the running TD and leaves it safe for the host to reuse."""
    from ..widgets.sources import RemovalSource

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
    from ..widgets.sources import RemovalSource

    if not callable(fn):
        return _wrong("pass a function that takes the lab")
    lab = RemovalSource(["block"], vcpus=2)
    try:
        fn(lab)
    except Exception as exc:  # noqa: BLE001 - a learner's bug is a message
        return _wrong(f"your function raised {type(exc).__name__}: {exc}")
    return _judge_removal(lab)


def _judge_removal(lab) -> Check:
    from ..widgets.sources import MODULE_SOURCE, _is_error

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
    "decode_sept_busy": ("0x8000020000000092", "TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT"),
    "decode_state": ("0xC0000B0D00000001", "TDX_EPT_ENTRY_STATE_INCORRECT | TDX_OPERAND_ID_RCX"),
    "build_order": ["tdh_mng_create", "tdh_mng_key_config", "tdh_mng_addcx", "tdh_mng_init",
                    "tdh_vp_create", "tdh_vp_addcx", "tdh_vp_init", "tdh_mem_sept_add",
                    "tdh_mem_page_add", "tdh_mr_extend", "tdh_mr_finalize", "tdh_vp_enter"],
    "removal_order": ["block", "track", "kick", "remove", "wbinvd"],
    "remove_page": _solution_remove_page,
    "teardown_count_64K": 16,
}


class Solution:
    """Displays as a collapsed `<details>` block; its text form does not give it away."""

    def __init__(self, name: str, body: str):
        self.name, self.body = name, body

    def _repr_html_(self) -> str:
        return (f"<details><summary>Show the solution ({html.escape(self.name)})</summary>"
                f"<pre>{html.escape(self.body)}</pre></details>")

    def __repr__(self) -> str:
        return f"<solution {self.name}: hidden, click to show>"


def show_solution(name: str, solutions: dict | None = None) -> Solution:
    """The hidden solution `name` from `solutions` (default: this lesson set's)."""
    solutions = SOLUTIONS if solutions is None else solutions
    if name not in solutions:
        raise KeyError(f"no solution named {name!r}; known: {', '.join(sorted(solutions))}")
    sol = solutions[name]
    body = inspect.getsource(sol) if callable(sol) else repr(sol)
    return Solution(name, body)


__all__ = ["Check", "check_teardown_count", "teardown_count", "check_decode",
           "check_build_order", "check_removal_order", "check_remove_page", "SOLUTIONS",
           "show_solution", "Solution"]
