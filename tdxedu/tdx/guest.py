"""Guest-side TDCALLs: TDG.MEM.PAGE.ACCEPT, enough to show host/guest contention.

ACCEPT walks the S-EPT without the tree lock and takes only the entry's *guest* lock; a host
SEAMCALL that lost the entry sets host priority, so the guest then gets
TDX_OPERAND_BUSY_HOST_PRIORITY until the host wins (reference/contention.md §2.3, §3, §4.1;
module 1.5.01 `src/td_dispatcher/vm_exits/tdg_mem_page_accept.c`).
"""

from __future__ import annotations

from ..trace import Preempt
from . import status as st
from .core import Result
from .sept import GUEST_ACCESSIBLE, NON_LEAF, SeptState, level_size
from .td import VcpuState

RCX = st.TDX_OPERAND_ID_RCX
OK = st.TDX_SUCCESS
ZEROING = Preempt("TDG.MEM.PAGE.ACCEPT zeroing the page, entry guest-locked")


class GuestMixin:
    def _h_tdg_mem_page_accept(self, tdvpr: int, gpa: int, level: int, lp: int):
        leaf = "TDG.MEM.PAGE.ACCEPT"
        vp = self.vcpus.get(tdvpr)
        if vp is None or vp.state != VcpuState.VCPU_ACTIVE or vp.assoc_lpid != lp:
            # Model rule: a TDCALL can only come from a vCPU that is in the guest on this LP.
            return Result(leaf, st.TDX_VCPU_STATE_INCORRECT)
        if level not in (0, 1) or gpa < 0 or gpa % level_size(level) or self._gpa_error(gpa, 0):
            return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
        sept = vp.td.tdcs.sept
        entry = sept.walk(gpa, level)
        if entry is not None and entry.state in GUEST_ACCESSIBLE:
            return Result(leaf, st.TDX_PAGE_ALREADY_ACCEPTED | level)
        if entry is not None and entry.state in NON_LEAF:
            return Result(leaf, st.TDX_PAGE_SIZE_MISMATCH | level)
        if entry is None or entry.state != SeptState.PENDING:
            # Not mapped yet (or blocked): an EPT-violation TD exit to the host, no error to
            # the guest; this is how an ACCEPT makes KVM run TDH.MEM.PAGE.AUG.
            self._leave_guest(vp)
            return Result(leaf, OK, rcx=gpa, exit_reason="EPT_VIOLATION")
        who = f"{leaf}@LP{lp}"
        got = entry.lock.try_guest(who)
        if got == "busy":
            return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
        if got == "host_priority":
            return Result(leaf, st.TDX_OPERAND_BUSY_HOST_PRIORITY | RCX)
        try:
            yield ZEROING
            entry.state = SeptState.MAPPED
            return Result(leaf, OK)
        finally:
            entry.lock.release(who)
