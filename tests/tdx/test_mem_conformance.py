"""Memory leaves against TDX module 1.5 (TDX 1.5.05, niooss-ledger/tdx-module `f99767b`):
`src/vmm_dispatcher/api_calls/tdh_mem_*.c`, `src/common/memory_handlers/sept_manager.c`
(`set_arch_septe_details_in_vmm_regs`, `secure_ept_walk`), `pamt_manager.c` (`pamt_walk`,
`pamt_implicit_get_and_lock`, `pamt_is_2mb_range_free`) and `src/common/helpers/helpers.c`.
Each test failed on the model before the fix it pins.
"""

from __future__ import annotations

import pytest
from tdx_cases import FREE_GPA, NO_TABLE_GPA, finish, new_module

from tdxedu.tdx import Leaf
from tdxedu.tdx import status as st
from tdxedu.tdx.pamt import PageType
from tdxedu.tdx.sept import SeptState, septe_details
from tdxedu.tdx.testing import TdBuilder

RCX, RDX, R8 = st.TDX_OPERAND_ID_RCX, st.TDX_OPERAND_ID_RDX, st.TDX_OPERAND_ID_R8
OK = st.TDX_SUCCESS
SVE = 1 << 63
LEAF_BITS = (6 << 3) | (1 << 6) | (1 << 7) | SVE  # MT = WB, IPAT, PS, SVE
BIG = 0x20_0000  # GPA of a 2 MB page (its level-1 entry is FREE in a fresh TD)


def _hold(lock, exclusive=False):
    assert lock.try_exclusive("other") if exclusive else lock.try_shared("other")


def _aug_2m(w, gpa=BIG):
    hpa = w.b.page_2m()
    assert w.m.tdh_mem_page_aug(w.tdr, gpa, 1, hpa).status == OK
    return hpa


# --- RCX / RDX: S-EPT entry details on failure -----------------------------------------------
def test_walk_failure_reports_the_entry_where_it_stopped(td_at):
    """helpers.c lock_sept_check_and_walk_internal fails with EPT_WALK_FAILED and the leaf
    calls set_arch_septe_details_in_vmm_regs on the entry the walk stopped at: here the FREE
    level-1 entry of 2 MB (RCX = SVE only, RDX = level 1, public state 0)."""
    w = td_at("finalized")
    res = w.m.tdh_mem_range_block(w.tdr, NO_TABLE_GPA, 0)
    assert res.status == st.TDX_EPT_WALK_FAILED | RCX
    assert (res.rcx, res.rdx) == (SVE, 1)


def test_state_errors_report_the_entry(td_at):
    """tdh_mem_range_block.c / tdh_mem_page_remove.c: a wrong state, an already blocked entry
    and a not-blocked entry all put the entry in RCX (HPA, RWX, MT, IPAT, PS, SVE) and level |
    public state << 8 in RDX; TLB_TRACKING_NOT_DONE leaves them 0."""
    w = td_at("finalized")
    hpa = w.td.private[0]
    res = w.m.tdh_mem_range_block(w.tdr, FREE_GPA, 0)
    assert res.status == st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX and (res.rcx, res.rdx) == (SVE, 0)
    res = w.m.tdh_mem_page_remove(w.tdr, 0, 0)
    assert res.status == st.TDX_GPA_RANGE_NOT_BLOCKED | RCX
    assert (res.rcx, res.rdx) == (hpa | 7 | LEAF_BITS, 4 << 8)  # MAPPED: RWX, public state 4
    assert w.m.tdh_mem_range_block(w.tdr, 0, 0).status == OK
    res = w.m.tdh_mem_range_block(w.tdr, 0, 0)
    assert res.status == st.TDX_GPA_RANGE_ALREADY_BLOCKED | RCX
    assert (res.rcx, res.rdx) == (hpa | LEAF_BITS, 1 << 8)  # BLOCKED: no RWX, public state 1
    res = w.m.tdh_mem_page_remove(w.tdr, 0, 0)
    assert res.status == st.TDX_TLB_TRACKING_NOT_DONE | RCX and (res.rcx, res.rdx) == (0, 0)


def test_busy_entry_reports_the_entry(td_at):
    """tdh_mem_page_remove.c: sept_lock_acquire_host fails -> BUSY | RCX, and the entry read
    during the walk goes to RCX / RDX (a PENDING page: public state 2)."""
    w = td_at("finalized")
    hpa = w.b.aug(w.td, FREE_GPA)
    w.enter()
    acc = w.m.stepwise("tdg_mem_page_accept", w.vp, FREE_GPA, 0, lp=w.vp_lp)
    next(acc)
    res = w.m.tdh_mem_page_remove(w.tdr, FREE_GPA, 0, lp=3)
    assert res.status == st.TDX_OPERAND_BUSY | RCX
    assert (res.rcx, res.rdx) == (hpa | LEAF_BITS, 2 << 8)
    finish(acc)


def test_septe_details_of_a_table():
    """sept_manager.c: a table entry is reported with SEPT_ARCH_ENTRY_NON_LEAF_MASK (RWX and PS
    only, no HPA); NL_MAPPED has public state 0x84, NL_BLOCKED 0x81."""
    from tdxedu.tdx.sept import SeptEntry
    e = SeptEntry(1, 0)
    e.state, e.hpa = SeptState.NL_MAPPED, 0x5000
    assert septe_details(e, 1) == (7, 1 | 0x84 << 8)
    e.state = SeptState.NL_BLOCKED
    assert septe_details(e, 1) == (0, 1 | 0x81 << 8)


# --- module versions -------------------------------------------------------------------------
@pytest.mark.parametrize("version,operand", [("1.5.05", RCX), ("1.5.01", st.TDX_OPERAND_ID_SEPT)])
def test_unblock_tracking_operand_per_version(version, operand):
    """tdh_mem_range_unblock.c: TLB_TRACKING_NOT_DONE carries OPERAND_ID_SEPT_TREE in TDX_1.5.01
    (`f9acbbf`) and OPERAND_ID_RCX in TDX 1.5.05 (`f99767b`)."""
    m = new_module(module_version=version)
    td = TdBuilder(m).build("finalized")
    assert m.tdh_mem_range_block(td.tdr, 0, 0).status == OK
    assert m.tdh_mem_range_unblock(td.tdr, 0, 0).status == st.TDX_TLB_TRACKING_NOT_DONE | operand


def test_unknown_module_version_is_a_clear_error():
    with pytest.raises(ValueError, match="1.5.01, 1.5.05"):
        new_module(module_version="2.0")


# --- 2 MB pages: the PAMT_2M entry ----------------------------------------------------------
def test_aug_accepts_2m_without_any_switch(td_at):
    """tdh_mem_page_aug.c: verify_page_info_input(LVL_PT, LVL_PD) -- a 2 MB AUG is part of the
    module, not an option (the model refused it unless built with huge_pages=True)."""
    w = td_at("finalized")
    hpa = _aug_2m(w)
    assert w.m.pamt.range_pt(hpa) == PageType.PT_REG and not w.m.check_invariants()


def test_4k_page_inside_a_2m_page_is_not_free(td_at):
    """pamt_manager.c pamt_walk stops at a PAMT_2M entry that is a leaf (PT_REG); helpers.c
    non_shared_hpa_metadata_check_and_lock then fails the 4K request (leaf size mismatch):
    PAGE_METADATA_INCORRECT. The model looked only at the (PT_NDA) 4K entry and handed the
    page out a second time."""
    w = td_at("finalized")
    hpa = _aug_2m(w)
    res = w.m.tdh_mem_sept_add(w.tdr, 0x4000_0000, 2, hpa + 0x1000)
    assert res.status == st.TDX_PAGE_METADATA_INCORRECT | R8
    res = w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, hpa + 0x3000)
    assert res.status == st.TDX_PAGE_METADATA_INCORRECT | R8
    assert not w.m.check_invariants()


def test_busy_2m_parent_makes_a_4k_page_busy(td_at):
    """pamt_manager.c pamt_walk takes the PAMT_2M entry shared before the 4K entry: while a 2 MB
    AUG holds that entry exclusively (check_and_lock_free_range_hpa), a 4K page of the range
    is BUSY."""
    w = td_at("finalized")
    hpa = w.b.page_2m()
    aug = w.m.stepwise("tdh_mem_page_aug", w.tdr, BIG, 1, hpa, lp=3)
    next(aug)
    res = w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, hpa + 0x1000, lp=2)
    assert res.status == st.TDX_OPERAND_BUSY | R8
    assert finish(aug).status == OK


def test_2m_range_with_a_reserved_page_is_not_free(td_at):
    """pamt_manager.c pamt_is_2mb_range_free: every PAMT_4K entry must be PT_NDA -- a PT_RSVD
    page makes the range unusable as a 2 MB page (the model skipped reserved pages)."""
    w = td_at("finalized")
    hpa = w.b.page_2m()
    w.m.pamt.entry((hpa >> 12) + 7).pt = PageType.PT_RSVD
    assert w.m.tdh_mem_page_aug(w.tdr, BIG, 1, hpa).status == st.TDX_PAGE_METADATA_INCORRECT | R8


def test_2m_block_epoch_and_remove_lock_live_in_pamt_2m(td_at):
    """tdh_mem_range_block.c stores BEPOCH in the PAMT entry at the leaf's size
    (pamt_implicit_get(pa, level)); tdh_mem_page_remove.c locks that entry exclusively
    (pamt_implicit_get_and_lock): for a 2 MB page, the PAMT_2M entry. Held by someone else,
    REMOVE is BUSY | RCX."""
    w = td_at("finalized")
    hpa = _aug_2m(w)
    epoch = w.m.td(w.tdr).tdcs.td_epoch
    assert w.m.tdh_mem_range_block(w.tdr, BIG, 1).status == OK
    assert w.m.pamt.range_entry(hpa).bepoch == epoch
    assert w.m.tdh_mem_track(w.tdr).status == OK
    big = w.m.pamt.range_entry(hpa)
    _hold(big.lock)
    assert w.m.tdh_mem_page_remove(w.tdr, BIG, 1).status == st.TDX_OPERAND_BUSY | RCX
    big.lock.release_shared("other")
    res = w.m.tdh_mem_page_remove(w.tdr, BIG, 1)
    assert res.status == OK and res.rcx == hpa and not w.m.check_invariants()


def test_sept_remove_locks_the_sept_page(td_at):
    """tdh_mem_sept_remove.c: pamt_implicit_get_and_lock(S-EPT page, 4K, EXCLUSIVE) before the
    blocked / tracked checks: BUSY | RCX while someone holds it."""
    w = td_at("finalized")
    page = w.td.sept_pages[(1, 0)]
    _hold(w.m.pamt.entry(page >> 12).lock)
    assert w.m.tdh_mem_sept_remove(w.tdr, 0, 1).status == st.TDX_OPERAND_BUSY | RCX


# --- DEMOTE / PROMOTE ------------------------------------------------------------------------
def _demoted(w):
    """A 2 MB PENDING page at BIG, blocked, tracked and demoted to 512 PENDING 4K pages."""
    hpa = _aug_2m(w)
    assert w.m.tdh_mem_range_block(w.tdr, BIG, 1).status == OK
    assert w.m.tdh_mem_track(w.tdr).status == OK
    assert w.m.tdh_mem_page_demote(w.tdr, BIG, 1, w.b.page()).status == OK
    return hpa


def test_demote_takes_the_tree_shared(td_at):
    """tdh_mem_page_demote.c: lock_sept_check_and_walk_private_gpa(..., TDX_LOCK_SHARED): an
    AUG elsewhere runs while DEMOTE is in flight (the model took the tree exclusively)."""
    w = td_at("finalized")
    _aug_2m(w)
    assert w.m.tdh_mem_range_block(w.tdr, BIG, 1).status == OK
    assert w.m.tdh_mem_track(w.tdr).status == OK
    g = w.m.stepwise("tdh_mem_page_demote", w.tdr, BIG, 1, w.b.page(), lp=3)
    next(g)
    assert w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, w.b.page(), lp=2).status == OK
    assert finish(g).status == OK and not w.m.check_invariants()


def test_demote_locks_the_pamt_2m_entry_last(td_at):
    """tdh_mem_page_demote.c -> pamt_manager.c pamt_demote: the PAMT_2M entry exclusively,
    after the new S-EPT page is checked: BUSY | RCX if held."""
    w = td_at("finalized")
    hpa = _aug_2m(w)
    assert w.m.tdh_mem_range_block(w.tdr, BIG, 1).status == OK
    assert w.m.tdh_mem_track(w.tdr).status == OK
    _hold(w.m.pamt.range_entry(hpa).lock)
    assert w.m.tdh_mem_page_demote(w.tdr, BIG, 1, w.td.private[0]).status == \
        st.TDX_PAGE_METADATA_INCORRECT | R8  # the S-EPT page first
    assert w.m.tdh_mem_page_demote(w.tdr, BIG, 1, w.b.page()).status == st.TDX_OPERAND_BUSY | RCX


def test_promote_locks_each_child_entry(td_at):
    """tdh_mem_page_promote.c is_sept_page_valid_for_merge host-locks the 512 entries in turn
    (sept_lock_acquire_host): one held by another SEAMCALL makes PROMOTE BUSY | RCX, with the
    parent entry in RCX / RDX (the model never looked at the children's locks)."""
    w = td_at("finalized")
    _demoted(w)
    assert w.m.tdh_mem_range_block(w.tdr, BIG, 1).status == OK
    assert w.m.tdh_mem_track(w.tdr).status == OK
    child = w.m.td(w.tdr).tdcs.sept.entries[(0, BIG + 0x5000)]
    assert child.lock.try_host("other")
    res = w.m.tdh_mem_page_promote(w.tdr, BIG, 1, lp=3)
    assert res.status == st.TDX_OPERAND_BUSY | RCX
    assert res.rdx == 1 | 0x81 << 8  # the parent, NL_BLOCKED at level 1
    child.lock.release("other")
    assert w.m.tdh_mem_page_promote(w.tdr, BIG, 1, lp=3).status == OK


def test_promote_locks_the_sept_page_and_takes_the_tree_shared(td_at):
    """tdh_mem_page_promote.c: the S-EPT page's PAMT entry exclusively (BUSY | RCX), with the
    tree only shared."""
    w = td_at("finalized")
    _demoted(w)
    assert w.m.tdh_mem_range_block(w.tdr, BIG, 1).status == OK
    assert w.m.tdh_mem_track(w.tdr).status == OK
    sept_page = w.m.td(w.tdr).tdcs.sept.entries[(1, BIG)].hpa
    lock = w.m.pamt.entry(sept_page >> 12).lock
    _hold(lock)
    assert w.m.tdh_mem_page_promote(w.tdr, BIG, 1).status == st.TDX_OPERAND_BUSY | RCX
    lock.release_shared("other")
    g = w.m.stepwise("tdh_mem_page_promote", w.tdr, BIG, 1, lp=3)
    next(g)
    assert w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, w.b.page(), lp=2).status == OK
    res = finish(g)
    assert res.status == OK and res.rcx == sept_page and not w.m.check_invariants()


# --- SEPT.ADD, SEPT.RD and the register-level entry ------------------------------------------
def test_sept_add_null_page_before_existing_table(td_at):
    """tdh_mem_sept_add.c process_l1_page: with version 0 a NULL_PA page (all ones) is
    OPERAND_INVALID | R8, checked before "the table already exists"."""
    w = td_at("finalized")
    assert w.m.tdh_mem_sept_add(w.tdr, 0, 1, (1 << 64) - 1).status == st.TDX_OPERAND_INVALID | R8
    assert w.m.tdh_mem_sept_add(w.tdr, 0, 1, w.b.page()).status == \
        st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX


def test_sept_rd(td_at):
    """tdh_mem_sept_rd.c: RCX / RDX = the entry's details on success; RDX bit 0 (read L2
    attributes) needs a debug TD: OPERAND_INVALID | RDX, after the TD state check."""
    w = td_at("finalized")
    res = w.m.tdh_mem_sept_rd(w.tdr, 0, 0)
    assert res.status == OK and (res.rcx, res.rdx) == (w.td.private[0] | 7 | LEAF_BITS, 4 << 8)
    assert w.m.tdh_mem_sept_rd(w.tdr, 0, 1).rdx == 1 | 0x84 << 8
    assert w.m.tdh_mem_sept_rd(w.tdr | 1, 0, 0).status == st.TDX_OPERAND_INVALID | RDX
    res = w.m.tdh_mem_sept_rd(w.tdr, NO_TABLE_GPA, 0)
    assert res.status == st.TDX_EPT_WALK_FAILED | RCX and res.rdx == 1


def test_seamcall_routes_demote_promote_sept_rd(td_at):
    """tdx_vmm_dispatcher.c dispatches leaves 15, 23 and 25 (RCX = GPA | level, RDX = TDR, R8 =
    DEMOTE's new S-EPT page); the model answered OPERAND_INVALID | RAX."""
    w = td_at("finalized")
    assert w.m.seamcall(Leaf.TDH_MEM_SEPT_RD, 0, w.tdr).status == OK
    assert w.m.seamcall(Leaf.TDH_MEM_PAGE_PROMOTE, 1, w.tdr).status == \
        st.TDX_GPA_RANGE_NOT_BLOCKED | RCX
    assert w.m.seamcall(Leaf.TDH_MEM_PAGE_DEMOTE, 1, w.tdr, w.b.page()).status == \
        st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX
