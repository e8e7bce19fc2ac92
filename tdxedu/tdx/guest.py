"""Guest-side TDCALLs: TDG.MEM.PAGE.ACCEPT, enough to show host/guest contention.

ACCEPT walks the S-EPT without the tree lock and takes only the entry's *guest* lock; a host
SEAMCALL that lost the entry sets host priority, so the guest then gets
TDX_OPERAND_BUSY_HOST_PRIORITY until the host wins ([M15]: module 1.5.01
`src/common/helpers/tdx_locks.h`,
`src/td_dispatcher/vm_exits/tdg_mem_page_accept.c`; the lock table in [Y-RFC]).
"""

from __future__ import annotations

from ..trace import Preempt
from . import status as st
from .core import Result
from .sept import GUEST_ACCESSIBLE, LEVEL_SIZES, NON_LEAF, SEPT_LEVELS, SEPT_MAPPED, SEPT_PENDING
from .td import VCPU_ACTIVE

RCX = st.TDX_OPERAND_ID_RCX
OK = st.TDX_SUCCESS
ZEROING = Preempt("TDG.MEM.PAGE.ACCEPT zeroing the page, entry guest-locked")


class GuestMixin:
    def _h_tdg_mem_page_accept(self, tdvpr: int, gpa: int, level: int, lp: int):
        leaf = "TDG.MEM.PAGE.ACCEPT"
        vp = self.vcpus.get(tdvpr)
        if vp is None or vp.state != VCPU_ACTIVE or vp.assoc_lpid != lp:
            # Model rule: a TDCALL can only come from a vCPU that is in the guest on this LP.
            return Result(leaf, st.TDX_VCPU_STATE_INCORRECT)
        if level not in (0, 1) or gpa < 0 or gpa % LEVEL_SIZES[level] or self._gpa_error(gpa, 0):
            return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
        sept = vp.td.tdcs.sept
        # Module 1.5 `tdg_mem_page_accept.c`, in its order. (1) The walk stops above the
        # requested level: at a guest-accessible leaf -> PAGE_ALREADY_ACCEPTED; at anything
        # else (missing table, blocked/pending leaf) -> EPT-violation TD exit, no error.
        for lvl in range(SEPT_LEVELS - 1, level, -1):
            above = sept.entries.get((lvl, gpa & -LEVEL_SIZES[lvl]))  # aligned down to the level
            if above is not None and above.state in NON_LEAF:
                continue
            if above is not None and above.state in GUEST_ACCESSIBLE:
                return Result(leaf, st.TDX_PAGE_ALREADY_ACCEPTED | level)
            return self._accept_violation(vp, gpa)
        entry = sept.walk(gpa, level)
        # (2) The entry's guest-side lock, *before* its state is looked at: BUSY if held,
        # BUSY_HOST_PRIORITY if a host SEAMCALL lost the entry since ([M15] `tdx_locks.h`).
        who = f"{leaf}@LP{lp}"
        got = entry.lock.try_guest(who)
        if got == "busy":
            return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
        if got == "host_priority":
            return Result(leaf, st.TDX_OPERAND_BUSY_HOST_PRIORITY | RCX)
        # (3) A non-free non-leaf at the requested level (2M asked, 4K mapped) -> SIZE_MISMATCH;
        # (4) already guest-accessible -> PAGE_ALREADY_ACCEPTED; not PENDING -> EPT violation.
        if entry.state in NON_LEAF:
            entry.lock.release(who)
            return Result(leaf, st.TDX_PAGE_SIZE_MISMATCH | level)
        if entry.state in GUEST_ACCESSIBLE:
            entry.lock.release(who)
            return Result(leaf, st.TDX_PAGE_ALREADY_ACCEPTED | level)
        if entry.state != SEPT_PENDING:
            entry.lock.release(who)
            return self._accept_violation(vp, gpa)
        try:
            yield ZEROING
            entry.state = SEPT_MAPPED
            return Result(leaf, OK)
        finally:
            entry.lock.release(who)

    def _accept_violation(self, vp, gpa: int) -> Result:
        """Not mapped yet (or blocked): an EPT-violation TD exit to the host, no error to the
        guest; this is how an ACCEPT makes KVM run TDH.MEM.PAGE.AUG ([M15]
        `tdg_mem_page_accept.c`)."""
        self._leave_guest(vp)
        return Result("TDG.MEM.PAGE.ACCEPT", OK, rcx=gpa, exit_reason="EPT_VIOLATION")
