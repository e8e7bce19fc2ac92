"""Guest-side TDCALLs: TDG.MEM.PAGE.ACCEPT, TDG.MEM.PAGE.ATTR.RD and TDG.MEM.PAGE.ATTR.WR.

They walk the S-EPT without the tree lock and take only the entry's *guest* lock; a host
SEAMCALL that lost the entry sets host priority, so the guest then gets
TDX_OPERAND_BUSY_HOST_PRIORITY until the host wins (module 1.5 `sept_lock_acquire_guest`).
When the page is not there to act on, the guest gets no error: the module makes an
EPT-violation TD exit to the host instead (`async_tdexit_ept_violation`, module
`src/td_dispatcher/vm_exits/td_other_exits.c`): RCX = exit qualification (a write; the entry's
RWX as bits 3..5), RDX = extended exit qualification (type ACCEPT or ATTR_WR in bits 3:0; bits
63:32: requested level, level and public state of the entry where it failed, is-leaf), R8 = the
GPA. This is how an ACCEPT makes KVM run TDH.MEM.PAGE.AUG.

Model rule: a TDCALL comes from a vCPU that is in the guest on that LP; anything else is
TDX_VCPU_STATE_INCORRECT (the real CPU cannot issue it).
Sources: module 1.5 `src/td_dispatcher/vm_exits/tdg_mem_page_accept.c`,
`tdg_mem_page_attr_rd.c`, `tdg_mem_page_attr_wr.c`, `include/auto_gen/sept_state_lookup.c`.
"""

from __future__ import annotations

from ..trace import Preempt
from . import status as st
from .core import Result
from .sept import (
    ACCEPTABLE,
    ARCH_STATE,
    ATTR_RD_ALLOWED,
    ATTR_WR_ALLOWED,
    GUEST_ACCESSIBLE,
    LEVEL_SIZES,
    NON_LEAF,
    PENDING_STATES,
    SEPT_FREE,
    SEPT_MAPPED,
    SEPT_PENDING,
    SeptState,
    entry_rwx,
    is_leaf,
)
from .td import VCPU_ACTIVE

RCX = st.TDX_OPERAND_ID_RCX
OK = st.TDX_SUCCESS
ZEROING = Preempt("TDG.MEM.PAGE.ACCEPT zeroing the page, entry guest-locked")
ATTR_HELD = Preempt("TDG.MEM.PAGE.ATTR entry guest-locked")
VMX_EEQ_ACCEPT, VMX_EEQ_ATTR_WR = 1, 5  # module `vmcs_defs.h` vmx_eeq_type_t
PENDING_FLAG = 1 << 62  # gpa_mapping_and_flags_t.pending (module `tdx_api_defs.h`)


class GuestMixin:
    def _guest_vp(self, tdvpr: int, lp: int):
        vp = self.vcpus.get(tdvpr)
        if vp is None or vp.state != VCPU_ACTIVE or vp.assoc_lpid != lp:
            return None
        return vp

    # TDG.MEM.PAGE.ACCEPT ------------------------------------------------------------------
    def _h_tdg_mem_page_accept(self, tdvpr: int, gpa: int, level: int, lp: int):
        """Module order: page info (level 4K or 2M, aligned) and GPA validity (OPERAND_INVALID
        | RCX); walk to the level; if it stopped above, a guest-accessible leaf there is
        PAGE_ALREADY_ACCEPTED with *that* level as operand, anything else (missing or blocked
        table, pending or blocked leaf) an EPT-violation exit; the entry's guest lock, before
        its state is read (BUSY / BUSY_HOST_PRIORITY | RCX); a non-free table at the level:
        PAGE_SIZE_MISMATCH | level; guest-accessible: ALREADY_ACCEPTED | level; not PENDING:
        EPT-violation exit; else zero the page and map it."""
        leaf = "TDG.MEM.PAGE.ACCEPT"
        vp = self._guest_vp(tdvpr, lp)
        if vp is None:
            return Result(leaf, st.TDX_VCPU_STATE_INCORRECT)
        if level not in (0, 1) or gpa < 0 or gpa % LEVEL_SIZES[level] or self._gpa_error(gpa, 0):
            return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
        sept = vp.td.tdcs.sept
        entry, lvl = sept.walk_stop(gpa, level)
        if lvl != level:  # check_tdaccept_failure, case 1 (walk failed)
            if entry is not None and entry.state in GUEST_ACCESSIBLE:
                return Result(leaf, st.TDX_PAGE_ALREADY_ACCEPTED | lvl)
            return self._guest_ept_violation(vp, leaf, gpa, level, entry, lvl)
        entry = sept.entry_at(gpa, level)
        who = f"{leaf}@LP{lp}"
        err = self._guest_lock(entry, who)
        if err:
            return Result(leaf, err)
        if entry.state in NON_LEAF:
            entry.lock.release(who)
            return Result(leaf, st.TDX_PAGE_SIZE_MISMATCH | level)
        if entry.state in GUEST_ACCESSIBLE:
            entry.lock.release(who)
            return Result(leaf, st.TDX_PAGE_ALREADY_ACCEPTED | level)
        if entry.state not in ACCEPTABLE:
            entry.lock.release(who)
            return self._guest_ept_violation(vp, leaf, gpa, level, entry, level)
        try:
            yield ZEROING
            entry.state = SEPT_MAPPED if entry.state == SEPT_PENDING else SeptState.EXPORTED_DIRTY
            return Result(leaf, OK)
        finally:
            entry.lock.release(who)

    # TDG.MEM.PAGE.ATTR.RD -----------------------------------------------------------------
    def _h_tdg_mem_page_attr_rd(self, tdvpr: int, gpa: int, lp: int):
        """Module order (`tdg_mem_page_attr_rd.c`): GPA validity (OPERAND_INVALID | RCX); walk
        towards 4K and take the guest lock of the entry where the walk stopped, whatever it
        is (BUSY / BUSY_HOST_PRIORITY | RCX); a state not in `tdcall_sept_state_lookup` row 23
        is an EPT-violation exit (no extended qualification); else RCX = GPA aligned to the
        mapping level | level | PENDING bit 62, RDX = the attributes (0: no L2 VMs)."""
        leaf = "TDG.MEM.PAGE.ATTR.RD"
        vp = self._guest_vp(tdvpr, lp)
        if vp is None:
            return Result(leaf, st.TDX_VCPU_STATE_INCORRECT)
        if gpa < 0 or self._gpa_error(gpa & ~0xFFF, 0):
            return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
        sept = vp.td.tdcs.sept
        _, lvl = sept.walk_stop(gpa, 0)
        entry = sept.entry_at(gpa, lvl)
        who = f"{leaf}@LP{lp}"
        err = self._guest_lock(entry, who)
        if err:
            return Result(leaf, err)
        if entry.state not in ATTR_RD_ALLOWED:
            entry.lock.release(who)
            return self._guest_ept_violation(vp, leaf, gpa, None, None, lvl)
        try:
            yield ATTR_HELD
            pending = PENDING_FLAG if entry.state in PENDING_STATES else 0
            return Result(leaf, OK, rcx=(gpa & -LEVEL_SIZES[lvl]) | lvl | pending, rdx=0)
        finally:
            entry.lock.release(who)

    # TDG.MEM.PAGE.ATTR.WR -----------------------------------------------------------------
    def _h_tdg_mem_page_attr_wr(self, tdvpr: int, gpa: int, level: int, attrs: int, flags: int,
                                lp: int):
        """Module order (`tdg_mem_page_attr_wr.c`), with no L2 VM (TDCS.NUM_L2_VMS = 0, all
        the model has): any attribute bit set (OPERAND_INVALID | RDX) or flag bit set
        (OPERAND_INVALID | R8); page info, levels 4K..1G (OPERAND_INVALID | RCX); GPA
        validity (same); walk to the level, a failed walk is an EPT-violation exit (type
        ATTR_WR); the entry's guest lock (BUSY / BUSY_HOST_PRIORITY | RCX); a non-free table
        at the level: PAGE_SIZE_MISMATCH | level; a state not in row 24: EPT-violation exit;
        else RCX = GPA | level | PENDING bit 62, RDX = the attributes."""
        leaf = "TDG.MEM.PAGE.ATTR.WR"
        vp = self._guest_vp(tdvpr, lp)
        if vp is None:
            return Result(leaf, st.TDX_VCPU_STATE_INCORRECT)
        if attrs:
            return Result(leaf, st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RDX)
        if flags:
            return Result(leaf, st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_R8)
        if level not in (0, 1, 2) or gpa < 0 or gpa % LEVEL_SIZES[level]:
            return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
        if self._gpa_error(gpa, 0):
            return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
        sept = vp.td.tdcs.sept
        stop, lvl = sept.walk_stop(gpa, level)
        if lvl != level:
            return self._guest_ept_violation(vp, leaf, gpa, level, stop, lvl)
        entry = sept.entry_at(gpa, level)
        who = f"{leaf}@LP{lp}"
        err = self._guest_lock(entry, who)
        if err:
            return Result(leaf, err)
        if entry.state in NON_LEAF:
            entry.lock.release(who)
            return Result(leaf, st.TDX_PAGE_SIZE_MISMATCH | level)
        if entry.state not in ATTR_WR_ALLOWED:
            entry.lock.release(who)
            return self._guest_ept_violation(vp, leaf, gpa, level, entry, level)
        try:
            yield ATTR_HELD
            pending = PENDING_FLAG if entry.state in PENDING_STATES else 0
            return Result(leaf, OK, rcx=gpa | level | pending, rdx=0)
        finally:
            entry.lock.release(who)

    # --- shared ---------------------------------------------------------------------------
    @staticmethod
    def _guest_lock(entry, who: str):
        """`sept_lock_acquire_guest`: None, or the BUSY status (operand RCX) to return."""
        got = entry.lock.try_guest(who)
        if got == "busy":
            return st.TDX_OPERAND_BUSY | RCX
        if got == "host_priority":
            return st.TDX_OPERAND_BUSY_HOST_PRIORITY | RCX
        return None

    def _guest_ept_violation(self, vp, leaf: str, gpa: int, req_level, entry,
                             lvl: int) -> Result:
        """The EPT-violation TD exit a TDCALL makes instead of failing (no error to the guest):
        the vCPU leaves the guest; VP.ENTER's result is this exit. `req_level` None: the plain
        exit of ATTR.RD (exit qualification and extended qualification 0)."""
        self._leave_guest(vp)
        qual = eeq = 0
        if req_level is not None:
            state = SEPT_FREE if entry is None else entry.state
            qual = 1 << 1 | entry_rwx(entry) << 3
            info = req_level | lvl << 3 | ARCH_STATE[state] << 6 | is_leaf(entry) << 14
            eeq_type = VMX_EEQ_ACCEPT if leaf == "TDG.MEM.PAGE.ACCEPT" else VMX_EEQ_ATTR_WR
            eeq = eeq_type | info << 32
        return Result(leaf, OK, rcx=qual, rdx=eeq, r8=gpa & ~0xFFF, exit_reason="EPT_VIOLATION")
