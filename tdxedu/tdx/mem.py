"""SEAMCALLs that take private memory away from a running TD (BLOCK, TRACK, REMOVE, UNBLOCK,
SEPT.REMOVE), and TDH.MEM.SEPT.RD.

The protocol: RANGE.BLOCK records the TD epoch as the page's BEPOCH; MEM.TRACK advances the
epoch; once every vCPU that entered in the block epoch has exited, PAGE.REMOVE may free the
entry. Each handler follows its module 1.5 file check by check (`src/vmm_dispatcher/api_calls/
tdh_mem_range_block.c`, `tdh_mem_range_unblock.c`, `tdh_mem_track.c`, `tdh_mem_page_remove.c`,
`tdh_mem_sept_remove.c`, `tdh_mem_sept_rd.c`): the shared prologue is
`CoreMixin._lock_sept_entry`; BLOCK, UNBLOCK and SEPT.REMOVE take the S-EPT tree exclusively,
REMOVE and SEPT.RD shared; all take the entry's host lock. Where the module reports the S-EPT
entry in RCX / RDX (`set_arch_septe_details_in_vmm_regs`) the model does too (`Call.septe`).
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
# RANGE.BLOCK, RANGE.UNBLOCK and SEPT.RD accept levels LVL_PT..EPTP.ept_pwl
# (`verify_page_info_input`): 0..3 with our 4-level S-EPT. PAGE.REMOVE accepts LVL_PT..LVL_PDPT,
# SEPT.REMOVE LVL_PD..ept_pwl.
BLOCK_LEVELS = tuple(range(SEPT_LEVELS))
REMOVE_LEVELS = (0, 1, 2)
SEPT_REMOVE_LEVELS = (1, 2, 3)
READ_L2_ATTRIBUTES_FLAG = 1  # RDX bit 0 of TDH.MEM.SEPT.RD (`tdh_mem_sept_rd.c`)


class MemMixin:
    def _bepoch_entry(self, entry):
        """The PAMT entry holding an S-EPT entry's BEPOCH: a page's PAMT entry at its level,
        or for a table the 4K entry of the S-EPT page it points to (`pamt_implicit_get` in
        `tdh_mem_range_block.c`)."""
        if entry.state in NON_LEAF:
            return self.pamt.entry(entry.hpa >> 12)
        return self.pamt.leaf_entry(entry.hpa, entry.level)

    # TDH.MEM.RANGE.BLOCK ------------------------------------------------------------------
    def _h_tdh_mem_range_block(self, tdr: int, gpa: int, level: int, lp: int):
        leaf = "TDH.MEM.RANGE.BLOCK"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(call, tdr, gpa, level,
                                                   Leaf.TDH_MEM_RANGE_BLOCK, BLOCK_LEVELS,
                                                   tree_exclusive=True)
            if err:
                return Result(leaf, err, *call.details)
            if entry.state not in BLOCK_RESULT:
                call.septe(entry, level)
                if entry.state in ANY_BLOCKED:
                    return Result(leaf, st.TDX_GPA_RANGE_ALREADY_BLOCKED | RCX, *call.details)
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX, *call.details)
            yield IN_SEAMCALL
            entry.state = BLOCK_RESULT[entry.state]
            self._bepoch_entry(entry).bepoch = td.tdcs.td_epoch
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.MEM.RANGE.UNBLOCK ----------------------------------------------------------------
    def _h_tdh_mem_range_unblock(self, tdr: int, gpa: int, level: int, lp: int):
        """The TLB-tracking failure carries operand RCX in TDX 1.5.05 and SEPT_TREE in 1.5.01
        (`tdxedu.tdx.versions`); it leaves RCX / RDX zero."""
        leaf = "TDH.MEM.RANGE.UNBLOCK"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(call, tdr, gpa, level,
                                                   Leaf.TDH_MEM_RANGE_UNBLOCK, BLOCK_LEVELS,
                                                   tree_exclusive=True)
            if err:
                return Result(leaf, err, *call.details)
            tdcs = td.tdcs
            if entry.state not in UNBLOCK_RESULT:
                call.septe(entry, level)
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX, *call.details)
            bepoch = self._bepoch_entry(entry).bepoch
            if tdcs.op_state == OP_RUNNABLE and not tdcs.is_tlb_tracked(bepoch):
                return Result(leaf, st.TDX_TLB_TRACKING_NOT_DONE | self._unblock_tracking_op)
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
        """After the prologue (tree shared): a leaf in a removable state (else
        EPT_ENTRY_STATE_INCORRECT | RCX); the page's PAMT entry at the leaf's level -- the
        PAMT_2M entry for a 2 MB page -- exclusively (BUSY | RCX); in a runnable TD blocked
        (GPA_RANGE_NOT_BLOCKED | RCX) and tracked (TLB_TRACKING_NOT_DONE | RCX). Success:
        RCX = the page's HPA, child count minus 1 (512 for a 2 MB page)."""
        leaf = "TDH.MEM.PAGE.REMOVE"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(call, tdr, gpa, level,
                                                   Leaf.TDH_MEM_PAGE_REMOVE, REMOVE_LEVELS,
                                                   tree_exclusive=False)
            if err:
                return Result(leaf, err, *call.details)
            tdcs = td.tdcs
            if entry.state not in REMOVE_ALLOWED:
                call.septe(entry, level)
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX, *call.details)
            hpa = entry.hpa
            page = self.pamt.leaf_entry(hpa, level)
            if not call.exclusive(page.lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
            err = self._tracking_error(call, tdcs, entry, page.bepoch)
            if err:
                return Result(leaf, err, *call.details)
            yield IN_SEAMCALL
            entry.state, entry.hpa = SEPT_FREE, 0
            if level == 1 and page.pt == PT_REG:
                self._free_2m_page(hpa, td)  # a 2 MB page (tdx.dpamt)
                return Result(leaf, OK, rcx=hpa)
            page.pt, page.owner, page.bepoch = PT_NDA, 0, 0
            td.chldcnt -= 1
            return self._removal_hint(Result(leaf, OK, rcx=hpa), hpa)
        finally:
            call.release()

    # TDH.MEM.SEPT.REMOVE (KVM never calls it; here for completeness) ----------------------
    def _h_tdh_mem_sept_remove(self, tdr: int, gpa: int, level: int, lp: int):
        """After the prologue (tree exclusive): a table entry (else EPT_ENTRY_STATE_INCORRECT |
        RCX); the S-EPT page's PAMT entry exclusively (BUSY | RCX); blocked and tracked in a
        runnable TD; every entry of the page FREE (EPT_PAGE_NOT_FREE | RCX). RCX = the page."""
        leaf = "TDH.MEM.SEPT.REMOVE"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(call, tdr, gpa, level,
                                                   Leaf.TDH_MEM_SEPT_REMOVE, SEPT_REMOVE_LEVELS,
                                                   tree_exclusive=True)
            if err:
                return Result(leaf, err, *call.details)
            tdcs = td.tdcs
            if entry.state not in NON_LEAF:
                call.septe(entry, level)
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX, *call.details)
            page = self.pamt.entry(entry.hpa >> 12)
            if not call.exclusive(page.lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
            err = self._tracking_error(call, tdcs, entry, page.bepoch)
            if err:
                return Result(leaf, err, *call.details)
            if tdcs.sept.children(entry):
                call.septe(entry, level)
                return Result(leaf, st.TDX_EPT_PAGE_NOT_FREE | RCX, *call.details)
            yield IN_SEAMCALL
            hpa = entry.hpa
            entry.state, entry.hpa = SEPT_FREE, 0
            page.pt, page.owner, page.bepoch = PT_NDA, 0, 0
            td.chldcnt -= 1
            return self._removal_hint(Result(leaf, OK, rcx=hpa), hpa)
        finally:
            call.release()

    # TDH.MEM.SEPT.RD ----------------------------------------------------------------------
    def _h_tdh_mem_sept_rd(self, tdr: int, gpa: int, level: int, lp: int):
        """Read one S-EPT entry (`tdh_mem_sept_rd.c`): RDX bit 0 asks for L2 attributes and is
        stripped before the TDR is checked; the prologue with the tree shared; the L2 flag
        needs a debug TD (the model has none: OPERAND_INVALID | RDX, after the TD state);
        success: RCX = the architectural entry, RDX = level | public state << 8."""
        leaf = "TDH.MEM.SEPT.RD"
        call = Call(f"{leaf}@LP{lp}")
        try:
            want_l2 = tdr & READ_L2_ATTRIBUTES_FLAG
            tdr &= ~READ_L2_ATTRIBUTES_FLAG
            td, err = self._lock_tdr(call, tdr, RDX)
            if err:
                return Result(leaf, err)
            err = self._td_state_error(call, td, Leaf.TDH_MEM_SEPT_RD)
            if err:
                return Result(leaf, err)
            if want_l2:
                return Result(leaf, st.TDX_OPERAND_INVALID | RDX)
            td, entry, err = self._lock_gpa_entry(call, td, gpa, level, BLOCK_LEVELS,
                                                  tree_exclusive=False)
            if err:
                return Result(leaf, err, *call.details)
            yield IN_SEAMCALL
            call.septe(entry, level)
            return Result(leaf, OK, *call.details)
        finally:
            call.release()
