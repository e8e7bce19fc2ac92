"""SEAMCALLs that take private memory away from a running TD: BLOCK, TRACK, REMOVE.

The protocol ([M15] `tdh_mem_track.c`, `helpers.c`): RANGE.BLOCK records the TD epoch as the page's
BEPOCH; MEM.TRACK advances the epoch; once every vCPU that entered in the block epoch has
exited, PAGE.REMOVE may free the entry. Locks per call: [M15], tabulated in [Y-RFC] (BLOCK takes the
S-EPT tree exclusively; REMOVE shared; both take the entry's host lock).
Module 1.5.01 `tdh_mem_range_block.c`, `tdh_mem_track.c`, `tdh_mem_page_remove.c`,
`tdh_mem_range_unblock.c`, `tdh_mem_sept_remove.c`.
"""

from __future__ import annotations

from . import status as st
from .core import IN_SEAMCALL, Call, Result
from .leaves import Leaf
from .pamt import PT_NDA, PT_REG
from .sept import (
    ANY_BLOCKED,
    BLOCK_RESULT,
    NON_LEAF,
    REMOVE_ALLOWED,
    SEPT_FREE,
    SEPT_LEVELS,
    UNBLOCK_RESULT,
)
from .td import OP_RUNNABLE

RCX = st.TDX_OPERAND_ID_RCX
RDX = st.TDX_OPERAND_ID_RDX
OK = st.TDX_SUCCESS
# RANGE.BLOCK and RANGE.UNBLOCK accept levels LVL_PT..EPTP.ept_pwl (module 1.5,
# niooss-ledger/tdx-module @0ea5e5f9 `src/vmm_dispatcher/api_calls/tdh_mem_range_block.c`,
# `tdh_mem_range_unblock.c`, `verify_page_info_input`): 0..3 with our 4-level S-EPT, so a
# level-3 table entry can be blocked and unblocked. PAGE.REMOVE accepts LVL_PT..LVL_PDPT
# (`tdh_mem_page_remove.c`).
BLOCK_LEVELS = tuple(range(SEPT_LEVELS))


class MemMixin:
    # TDH.MEM.RANGE.BLOCK ------------------------------------------------------------------
    def _h_tdh_mem_range_block(self, tdr: int, gpa: int, level: int, lp: int):
        leaf = "TDH.MEM.RANGE.BLOCK"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(call, tdr, gpa, level,
                                                   Leaf.TDH_MEM_RANGE_BLOCK, BLOCK_LEVELS,
                                                   tree_exclusive=True)
            if err:
                return Result(leaf, err)
            tdcs = td.tdcs
            if entry.state in ANY_BLOCKED:
                return Result(leaf, st.TDX_GPA_RANGE_ALREADY_BLOCKED | RCX)
            if entry.state not in BLOCK_RESULT:
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
            yield IN_SEAMCALL
            entry.state = BLOCK_RESULT[entry.state]
            self.pamt.entry(entry.hpa >> 12).bepoch = tdcs.td_epoch
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.MEM.RANGE.UNBLOCK ----------------------------------------------------------------
    def _h_tdh_mem_range_unblock(self, tdr: int, gpa: int, level: int, lp: int):
        leaf = "TDH.MEM.RANGE.UNBLOCK"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(call, tdr, gpa, level,
                                                   Leaf.TDH_MEM_RANGE_UNBLOCK, BLOCK_LEVELS,
                                                   tree_exclusive=True)
            if err:
                return Result(leaf, err)
            tdcs = td.tdcs
            if entry.state not in UNBLOCK_RESULT:
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
            bepoch = self.pamt.entry(entry.hpa >> 12).bepoch
            if tdcs.op_state == OP_RUNNABLE and not tdcs.is_tlb_tracked(bepoch):
                return Result(leaf, st.TDX_TLB_TRACKING_NOT_DONE | st.TDX_OPERAND_ID_SEPT)
            yield IN_SEAMCALL
            entry.state = UNBLOCK_RESULT[entry.state]
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.MEM.TRACK ------------------------------------------------------------------------
    def _h_tdh_mem_track(self, tdr: int, lp: int):
        leaf = "TDH.MEM.TRACK"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RCX)
            if err:
                return Result(leaf, err)
            err = self._td_state_error(call, td, Leaf.TDH_MEM_TRACK)
            if err:
                return Result(leaf, err)
            tdcs = td.tdcs
            if not call.exclusive(tdcs.epoch_lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TD_EPOCH)
            if tdcs.refcount[(tdcs.td_epoch - 1) & 1]:
                return Result(leaf, st.TDX_PREVIOUS_TLB_EPOCH_BUSY)
            yield IN_SEAMCALL
            tdcs.td_epoch += 1
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.MEM.PAGE.REMOVE ------------------------------------------------------------------
    def _h_tdh_mem_page_remove(self, tdr: int, gpa: int, level: int, lp: int):
        leaf = "TDH.MEM.PAGE.REMOVE"
        call = Call(f"{leaf}@LP{lp}")
        try:
            # verify_page_info_input(LVL_PT, LVL_PDPT): levels 4K..1G (module 1.5
            # `tdh_mem_page_remove.c`); a non-leaf there is EPT_ENTRY_STATE_INCORRECT below.
            td, entry, err = self._lock_sept_entry(call, tdr, gpa, level,
                                                   Leaf.TDH_MEM_PAGE_REMOVE, (0, 1, 2),
                                                   tree_exclusive=False)
            if err:
                return Result(leaf, err)
            tdcs = td.tdcs
            if entry.state not in REMOVE_ALLOWED:
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
            page = self.pamt.entry(entry.hpa >> 12)
            if not call.exclusive(page.lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
            err = self._tracking_error(tdcs, entry, page.bepoch)
            if err:
                return Result(leaf, err)
            yield IN_SEAMCALL
            hpa = entry.hpa
            entry.state, entry.hpa = SEPT_FREE, 0
            if level == 1 and self.pamt.range_pt(hpa) == PT_REG:
                self._free_2m_page(hpa, td)  # a 2 MB leaf (tdx.dpamt)
                return Result(leaf, OK, rcx=hpa)
            page.pt, page.owner, page.bepoch = PT_NDA, 0, 0
            td.chldcnt -= 1
            return self._removal_hint(Result(leaf, OK, rcx=hpa), hpa)
        finally:
            call.release()

    # TDH.MEM.SEPT.REMOVE (KVM never calls it; here for completeness) ----------------------
    def _h_tdh_mem_sept_remove(self, tdr: int, gpa: int, level: int, lp: int):
        leaf = "TDH.MEM.SEPT.REMOVE"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(call, tdr, gpa, level,
                                                   Leaf.TDH_MEM_SEPT_REMOVE, (1, 2, 3),
                                                   tree_exclusive=True)
            if err:
                return Result(leaf, err)
            tdcs = td.tdcs
            if entry.state not in NON_LEAF:
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
            page = self.pamt.entry(entry.hpa >> 12)
            err = self._tracking_error(tdcs, entry, page.bepoch)
            if err:
                return Result(leaf, err)
            if tdcs.sept.children(entry):
                return Result(leaf, st.TDX_EPT_PAGE_NOT_FREE | RCX)
            yield IN_SEAMCALL
            hpa = entry.hpa
            entry.state, entry.hpa = SEPT_FREE, 0
            page.pt, page.owner, page.bepoch = PT_NDA, 0, 0
            td.chldcnt -= 1
            return self._removal_hint(Result(leaf, OK, rcx=hpa), hpa)
        finally:
            call.release()
