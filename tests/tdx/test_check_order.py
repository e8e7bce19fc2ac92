"""Order of checks and exact statuses of RANGE.BLOCK, MEM.TRACK and PAGE.REMOVE, and of the
prologue they share, against the TDX module 1.5 source (niooss-ledger/tdx-module, commit
0ea5e5f9, a copy of Intel's TDX 1.5 tree): `src/vmm_dispatcher/api_calls/tdh_mem_range_block.c`,
`tdh_mem_track.c`, `tdh_mem_page_remove.c`, `src/common/helpers/helpers.c`
(`lock_sept_check_and_walk_internal`, `verify_page_info_input`,
`check_any_td_state_map_tdcs_and_lock`) and `src/common/memory_handlers/sept_manager.c`
(`secure_ept_walk`). Where two checks would both fail, each test sets up both and expects the
status of the one the module makes first.
"""

from __future__ import annotations

from tdx_cases import NO_TABLE_GPA

from tdxedu.tdx import status as st
from tdxedu.tdx.sept import SHARED_BIT, SeptState

RCX = st.TDX_OPERAND_ID_RCX
OK = st.TDX_SUCCESS
WALK_FAILED = st.TDX_EPT_WALK_FAILED | RCX


def _hold(lock, exclusive=True):
    """Take a module lock as another (imaginary) SEAMCALL would."""
    got = lock.try_exclusive("other", True) if exclusive else lock.try_shared("other", True)
    assert got


# --- RANGE.BLOCK: level range ---------------------------------------------------------------
def test_block_accepts_levels_up_to_ept_pwl(td_at):
    """tdh_mem_range_block.c: verify_page_info_input(LVL_PT, EPTP.ept_pwl). With a 4-level
    S-EPT (ept_pwl = 3) a level-3 table entry may be blocked; level 4 is OPERAND_INVALID."""
    w = td_at("finalized")
    assert w.m.tdh_mem_range_block(w.tdr, 0, 4).status == st.TDX_OPERAND_INVALID | RCX
    assert w.m.tdh_mem_range_block(w.tdr, 0, 3).status == OK
    assert w.m.td(w.tdr).tdcs.sept.entries[(3, 0)].state == SeptState.NL_BLOCKED
    assert not w.m.check_invariants()


def test_unblock_accepts_levels_up_to_ept_pwl(td_at):
    """tdh_mem_range_unblock.c: verify_page_info_input(LVL_PT, EPTP.ept_pwl), as BLOCK: a
    blocked level-3 table entry unblocks once the block epoch is tracked; level 4 is invalid."""
    w = td_at("finalized")
    assert w.m.tdh_mem_range_unblock(w.tdr, 0, 4).status == st.TDX_OPERAND_INVALID | RCX
    assert w.m.tdh_mem_range_block(w.tdr, 0, 3).status == OK
    assert w.m.tdh_mem_track(w.tdr).status == OK
    assert w.m.tdh_mem_range_unblock(w.tdr, 0, 3).status == OK
    assert w.m.td(w.tdr).tdcs.sept.entries[(3, 0)].state == SeptState.NL_MAPPED
    assert not w.m.check_invariants()


def test_remove_levels_stop_at_pdpt(td_at):
    """tdh_mem_page_remove.c: verify_page_info_input(LVL_PT, LVL_PDPT): level 3 is invalid."""
    w = td_at("finalized")
    assert w.m.tdh_mem_page_remove(w.tdr, 0, 3).status == st.TDX_OPERAND_INVALID | RCX


# --- the walk stops at a blocked table ------------------------------------------------------
def test_walk_stops_at_nl_blocked_table(td_at):
    """sept_manager.c secure_ept_walk stops at an entry with RWX = 0 above the requested level;
    RANGE.BLOCK of a table entry clears its RWX (tdh_mem_range_block.c block_sept_entry). So
    once the level-1 table over GPA 0 is NL_BLOCKED, a 4K BLOCK or REMOVE under it cannot reach
    level 0: EPT_WALK_FAILED | RCX (helpers.c lock_sept_check_and_walk_internal)."""
    w = td_at("finalized")
    assert w.m.tdh_mem_range_block(w.tdr, 0, 1).status == OK
    assert w.m.tdh_mem_track(w.tdr).status == OK
    assert w.m.tdh_mem_range_block(w.tdr, 0, 0).status == WALK_FAILED
    assert w.m.tdh_mem_page_remove(w.tdr, 0, 0).status == WALK_FAILED
    assert w.m.td(w.tdr).tdcs.sept.entries[(0, 0)].state == SeptState.MAPPED
    # Unblocking the table makes the 4K entry reachable again.
    assert w.m.tdh_mem_range_unblock(w.tdr, 0, 1).status == OK
    assert w.m.tdh_mem_range_block(w.tdr, 0, 0).status == OK
    assert not w.m.check_invariants()


# --- prologue order (two failures at once) ---------------------------------------------------
def test_td_state_before_gpa_operand(td_at):
    """tdh_mem_range_block.c: check_state_map_tdcs_and_lock comes before
    verify_page_info_input: a wrong op-state wins over a bad RCX."""
    w = td_at("initialized")
    tdcs = w.m.td(w.tdr).tdcs
    _hold(tdcs.op_state_lock)  # OP_STATE busy and a shared GPA at once
    res = w.m.tdh_mem_range_block(w.tdr, SHARED_BIT, 0)
    assert res.status == st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_OP_STATE


def test_gpa_operand_before_tree_lock(td_at):
    """helpers.c lock_sept_check_and_walk_internal: GPA validity (shared bit) before the
    S-EPT tree lock: OPERAND_INVALID | RCX, not BUSY | SEPT_TREE."""
    w = td_at("finalized")
    _hold(w.m.td(w.tdr).tdcs.sept_lock)
    res = w.m.tdh_mem_page_remove(w.tdr, SHARED_BIT, 0)
    assert res.status == st.TDX_OPERAND_INVALID | RCX


def test_tree_lock_before_walk(td_at):
    """helpers.c: the tree lock is taken before the walk: BUSY | SEPT_TREE, not WALK_FAILED."""
    w = td_at("finalized")
    _hold(w.m.td(w.tdr).tdcs.sept_lock, exclusive=False)  # BLOCK wants it exclusive
    res = w.m.tdh_mem_range_block(w.tdr, NO_TABLE_GPA, 0)
    assert res.status == st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT


def test_entry_lock_before_entry_state(td_at):
    """tdh_mem_range_block.c: sept_lock_acquire_host before the state check: BUSY | RCX, not
    GPA_RANGE_ALREADY_BLOCKED."""
    w = td_at("finalized")
    assert w.m.tdh_mem_range_block(w.tdr, 0, 0).status == OK
    entry = w.m.td(w.tdr).tdcs.sept.entries[(0, 0)]
    assert entry.lock.try_guest("TDG.MEM.PAGE.ATTR.RD") == "ok"  # a guest holds the entry
    res = w.m.tdh_mem_range_block(w.tdr, 0, 0)
    assert res.status == st.TDX_OPERAND_BUSY | RCX


# --- PAGE.REMOVE: the page's PAMT lock comes before the blocked/tracked checks ---------------
def test_remove_page_lock_before_tracking(td_at):
    """tdh_mem_page_remove.c: pamt_implicit_get_and_lock (exclusive) on the removed page, then
    the not-blocked check: with both failing, BUSY | RCX."""
    w = td_at("finalized")
    tdcs = w.m.td(w.tdr).tdcs
    hpa = tdcs.sept.entries[(0, 0)].hpa
    _hold(w.m.pamt.entry(hpa >> 12).lock, exclusive=False)
    res = w.m.tdh_mem_page_remove(w.tdr, 0, 0)  # not blocked either
    assert res.status == st.TDX_OPERAND_BUSY | RCX


def test_remove_state_before_page_lock(td_at):
    """tdh_mem_page_remove.c: the leaf/allowed-state check comes before the page's PAMT lock: a
    non-leaf entry gives EPT_ENTRY_STATE_INCORRECT | RCX even with its page locked."""
    w = td_at("finalized")
    table = w.m.td(w.tdr).tdcs.sept.entries[(1, 0)]
    _hold(w.m.pamt.entry(table.hpa >> 12).lock, exclusive=False)
    res = w.m.tdh_mem_page_remove(w.tdr, 0, 1)
    assert res.status == st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX


# --- MEM.TRACK -------------------------------------------------------------------------------
def test_track_epoch_lock_before_refcount(td_at):
    """tdh_mem_track.c: the TD epoch lock (exclusive) before the previous-epoch refcount:
    BUSY | TD_EPOCH, not PREVIOUS_TLB_EPOCH_BUSY."""
    w = td_at("finalized")
    w.enter()
    assert w.m.tdh_mem_track(w.tdr).status == OK  # the vCPU is now in the previous epoch
    _hold(w.m.td(w.tdr).tdcs.epoch_lock, exclusive=False)
    res = w.m.tdh_mem_track(w.tdr)
    assert res.status == st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TD_EPOCH


def test_track_tdr_operand_is_rcx(td_at):
    """tdh_mem_track.c: the TDR is the RCX operand (check_lock_and_map_explicit_tdr, shared)."""
    w = td_at("finalized")
    _hold(w.m.pamt.entry(w.tdr >> 12).lock)
    assert w.m.tdh_mem_track(w.tdr).status == st.TDX_OPERAND_BUSY | RCX
