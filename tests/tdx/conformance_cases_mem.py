"""Cases for docs/conformance.md sections 2 and 3 (memory leaves, TDH.VP.ENTER, guest TDCALLs):
each one drives the model into one check of a module 1.5 handler and states the status that
check returns. tests/tdx/test_conformance_table.py runs every case and requires that each
status a table marks as modelled is produced by a case of that leaf, and that no case produces
a status its leaf's table does not list.

Other SEAMCALLs "in flight" are imitated by taking the lock they would hold ("other").
Source of each row: the module file named in the table, TDX 1.5.05 (niooss-ledger/tdx-module
`f99767b`).
"""

from __future__ import annotations

from tdx_cases import FREE_GPA, NO_TABLE_GPA, OUTSIDE, C

from tdxedu.tdx import status as st
from tdxedu.tdx.pamt import PageType
from tdxedu.tdx.td import EPF_FAULTS_TO_ARM

RCX, RDX, R8 = st.TDX_OPERAND_ID_RCX, st.TDX_OPERAND_ID_RDX, st.TDX_OPERAND_ID_R8
OK = st.TDX_SUCCESS
BIG = 0x20_0000  # a GPA whose level-1 entry is FREE: room for a 2 MB page
NULL_PA = (1 << 64) - 1


# --- helpers that put the world in a state ------------------------------------------------------
def _td(w):
    return w.m.td(w.tdr)


def _hold_tdr(w):
    assert w.m.pamt.entry(w.tdr >> 12).lock.try_exclusive("other")


def _hold_tdvpr(w):
    assert w.m.pamt.entry(w.vp >> 12).lock.try_exclusive("other")


def _fatal(w):
    _td(w).fatal = True


def _tdcs_missing(w):
    w.b.configure_keys(w.td)


def _hold_op_state(w):
    assert _td(w).tdcs.op_state_lock.try_exclusive("other")


def _hold_tree(w):
    assert _td(w).tdcs.sept_lock.try_exclusive("other")


def _hold_entry(w, gpa, level):
    assert _td(w).tdcs.sept.entry_at(gpa, level).lock.try_host("other")


def _hold_epoch(w):
    assert _td(w).tdcs.epoch_lock.try_exclusive("other")


def _aug_2m(w, gpa=BIG):
    hpa = w.b.page_2m()
    assert w.m.tdh_mem_page_aug(w.tdr, gpa, 1, hpa).status == OK
    return hpa


def _range_with_reserved_page(w):
    hpa = w.b.page_2m()
    w.m.pamt.entry((hpa >> 12) + 5).pt = PageType.PT_RSVD
    return hpa


def _block_track(w, gpa, level):
    assert w.m.tdh_mem_range_block(w.tdr, gpa, level).status == OK
    assert w.m.tdh_mem_track(w.tdr).status == OK


def _in_guest(w):
    w.enter()


def _arm_zero_step(w, gpa=FREE_GPA):
    for _ in range(EPF_FAULTS_TO_ARM):
        w.enter()
        w.exit(reason="EPT_VIOLATION", gpa=gpa, progressed=False)


# --- the prologue every S-EPT leaf shares (helpers.c, in the module's order) ----------------------
def _prologue(name, call, gpa, level, *, walk_fail, tdr_op=RDX, stage_bad_op="keys_configured"):
    """Cases for the checks before the leaf's own: TDR operand, TD state, GPA | level, tree,
    walk, entry lock. `call(w, tdr, gpa, level)` issues the leaf."""
    ok_gpa, ok_level = gpa, level
    wf_gpa, wf_level = walk_fail
    return [
        C(f"{name}: TDR not 4K aligned", "finalized",
          lambda w: call(w, w.tdr + 8, ok_gpa, ok_level), st.TDX_OPERAND_INVALID | tdr_op),
        C(f"{name}: TDR outside every TDMR", "finalized",
          lambda w: call(w, OUTSIDE, ok_gpa, ok_level), st.TDX_OPERAND_ADDR_RANGE_ERROR | tdr_op),
        C(f"{name}: TDR PAMT entry busy", "finalized",
          lambda w: (_hold_tdr(w), call(w, w.tdr, ok_gpa, ok_level))[1],
          st.TDX_OPERAND_BUSY | tdr_op),
        C(f"{name}: TDR operand is not a TDR", "finalized",
          lambda w: call(w, w.vp, ok_gpa, ok_level), st.TDX_PAGE_METADATA_INCORRECT | tdr_op),
        C(f"{name}: TD fatal", "finalized",
          lambda w: (_fatal(w), call(w, w.tdr, ok_gpa, ok_level))[1], st.TDX_TD_FATAL),
        C(f"{name}: keys not configured", "created",
          lambda w: call(w, w.tdr, ok_gpa, ok_level), st.TDX_TD_KEYS_NOT_CONFIGURED),
        C(f"{name}: TDCS not allocated", "created",
          lambda w: (_tdcs_missing(w), call(w, w.tdr, ok_gpa, ok_level))[1],
          st.TDX_TDCS_NOT_ALLOCATED),
        C(f"{name}: OP_STATE lock busy", "finalized",
          lambda w: (_hold_op_state(w), call(w, w.tdr, ok_gpa, ok_level))[1],
          st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_OP_STATE),
        C(f"{name}: op-state not allowed", stage_bad_op,
          lambda w: call(w, w.tdr, ok_gpa, ok_level), st.TDX_OP_STATE_INCORRECT),
        C(f"{name}: level out of range", "finalized",
          lambda w: call(w, w.tdr, ok_gpa, 5), st.TDX_OPERAND_INVALID | RCX),
        C(f"{name}: GPA shared", "finalized",
          lambda w: call(w, w.tdr, ok_gpa | 1 << 47, ok_level), st.TDX_OPERAND_INVALID | RCX),
        C(f"{name}: S-EPT tree busy", "finalized",
          lambda w: (_hold_tree(w), call(w, w.tdr, ok_gpa, ok_level))[1],
          st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT),
        C(f"{name}: walk does not reach the level", "finalized",
          lambda w: call(w, w.tdr, wf_gpa, wf_level), st.TDX_EPT_WALK_FAILED | RCX),
        C(f"{name}: entry host lock busy", "finalized",
          lambda w: (_hold_entry(w, ok_gpa, ok_level), call(w, w.tdr, ok_gpa, ok_level))[1],
          st.TDX_OPERAND_BUSY | RCX),
    ]


def _aug(w, tdr, gpa, level, page=None):
    return w.m.tdh_mem_page_aug(tdr, gpa, level, w.b.page() if page is None else page)


def _sept_add(w, tdr, gpa, level, page=None):
    return w.m.tdh_mem_sept_add(tdr, gpa, level, w.b.page() if page is None else page)


def _block(w, tdr, gpa, level):
    return w.m.tdh_mem_range_block(tdr, gpa, level)


def _unblock(w, tdr, gpa, level):
    return w.m.tdh_mem_range_unblock(tdr, gpa, level)


def _remove(w, tdr, gpa, level):
    return w.m.tdh_mem_page_remove(tdr, gpa, level)


def _sept_remove(w, tdr, gpa, level):
    return w.m.tdh_mem_sept_remove(tdr, gpa, level)


def _sept_rd(w, tdr, gpa, level):
    return w.m.tdh_mem_sept_rd(tdr, gpa, level)


def _demote(w, tdr, gpa, level, page=None):
    return w.m.tdh_mem_page_demote(tdr, gpa, level, w.b.page() if page is None else page)


def _promote(w, tdr, gpa, level):
    return w.m.tdh_mem_page_promote(tdr, gpa, level)


def _track(w, tdr):
    return w.m.tdh_mem_track(tdr)


def _demoted(w):
    """A 2 MB page at BIG, demoted to 512 PENDING 4K pages and its table blocked + tracked."""
    _aug_2m(w)
    _block_track(w, BIG, 1)
    assert _demote(w, w.tdr, BIG, 1).status == OK
    _block_track(w, BIG, 1)


# --- TDH.MEM.PAGE.AUG ---------------------------------------------------------------------------
AUG = "TDH.MEM.PAGE.AUG"
CASES = _prologue(AUG, _aug, FREE_GPA, 0, walk_fail=(NO_TABLE_GPA, 0))
CASES += [
    C(f"{AUG}: success (4K)", "finalized", lambda w: _aug(w, w.tdr, FREE_GPA, 0), OK),
    C(f"{AUG}: success (2M)", "finalized",
      lambda w: _aug(w, w.tdr, BIG, 1, w.b.page_2m()), OK),
    C(f"{AUG}: entry not FREE / REMOVED", "finalized",
      lambda w: _aug(w, w.tdr, 0, 0), st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX),
    C(f"{AUG}: page not 4K aligned", "finalized",
      lambda w: _aug(w, w.tdr, FREE_GPA, 0, w.b.page() + 8), st.TDX_OPERAND_INVALID | R8),
    C(f"{AUG}: 2M page not 2M aligned", "finalized",
      lambda w: _aug(w, w.tdr, BIG, 1, w.b.page_2m() + 0x1000), st.TDX_OPERAND_INVALID | R8),
    C(f"{AUG}: page outside every TDMR", "finalized",
      lambda w: _aug(w, w.tdr, FREE_GPA, 0, OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | R8),
    C(f"{AUG}: page PAMT entry busy", "finalized",
      lambda w: _aug(w, w.tdr, FREE_GPA, 0, w.tdr), st.TDX_OPERAND_BUSY | R8),
    C(f"{AUG}: page not PT_NDA", "finalized",
      lambda w: _aug(w, w.tdr, FREE_GPA, 0, w.td.private[0]),
      st.TDX_PAGE_METADATA_INCORRECT | R8),
    C(f"{AUG}: 4K page inside a 2M TD page", "finalized",
      lambda w: _aug(w, w.tdr, FREE_GPA, 0, _aug_2m(w) + 0x1000),
      st.TDX_PAGE_METADATA_INCORRECT | R8),
    C(f"{AUG}: 2M range not entirely free (a reserved page)", "finalized",
      lambda w: _aug(w, w.tdr, BIG, 1, _range_with_reserved_page(w)),
      st.TDX_PAGE_METADATA_INCORRECT | R8),
]

# --- TDH.MEM.SEPT.ADD ---------------------------------------------------------------------------
SEPT_ADD = "TDH.MEM.SEPT.ADD"
CASES += _prologue(SEPT_ADD, _sept_add, BIG, 1, walk_fail=(0x4000_0000, 1))
CASES += [
    C(f"{SEPT_ADD}: success", "finalized", lambda w: _sept_add(w, w.tdr, BIG, 1), OK),
    C(f"{SEPT_ADD}: level 0", "finalized",
      lambda w: _sept_add(w, w.tdr, FREE_GPA, 0), st.TDX_OPERAND_INVALID | RCX),
    C(f"{SEPT_ADD}: entry is a page", "finalized",
      lambda w: (_aug_2m(w), _sept_add(w, w.tdr, BIG, 1))[1],
      st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX),
    C(f"{SEPT_ADD}: NULL_PA page", "finalized",
      lambda w: _sept_add(w, w.tdr, BIG, 1, NULL_PA), st.TDX_OPERAND_INVALID | R8),
    C(f"{SEPT_ADD}: table exists (NL_MAPPED)", "finalized",
      lambda w: _sept_add(w, w.tdr, 0, 1), st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX),
    C(f"{SEPT_ADD}: version 2", "finalized",
      lambda w: w.m.seamcall(2 << 16 | 3, BIG | 1, w.tdr, w.b.page()),
      st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX),
    C(f"{SEPT_ADD}: page misaligned", "finalized",
      lambda w: _sept_add(w, w.tdr, BIG, 1, w.b.page() + 8), st.TDX_OPERAND_INVALID | R8),
    C(f"{SEPT_ADD}: page outside every TDMR", "finalized",
      lambda w: _sept_add(w, w.tdr, BIG, 1, OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | R8),
    C(f"{SEPT_ADD}: page PAMT entry busy", "finalized",
      lambda w: _sept_add(w, w.tdr, BIG, 1, w.tdr), st.TDX_OPERAND_BUSY | R8),
    C(f"{SEPT_ADD}: page not PT_NDA", "finalized",
      lambda w: _sept_add(w, w.tdr, BIG, 1, w.td.private[0]),
      st.TDX_PAGE_METADATA_INCORRECT | R8),
]

# --- TDH.MEM.RANGE.BLOCK ------------------------------------------------------------------------
BLOCK = "TDH.MEM.RANGE.BLOCK"
CASES += _prologue(BLOCK, _block, 0, 0, walk_fail=(NO_TABLE_GPA, 0))
CASES += [
    C(f"{BLOCK}: success", "finalized", lambda w: _block(w, w.tdr, 0, 0), OK),
    C(f"{BLOCK}: already blocked", "finalized",
      lambda w: (_block(w, w.tdr, 0, 0), _block(w, w.tdr, 0, 0))[1],
      st.TDX_GPA_RANGE_ALREADY_BLOCKED | RCX),
    C(f"{BLOCK}: entry FREE", "finalized",
      lambda w: _block(w, w.tdr, FREE_GPA, 0), st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX),
]

# --- TDH.MEM.RANGE.UNBLOCK ----------------------------------------------------------------------
UNBLOCK = "TDH.MEM.RANGE.UNBLOCK"
CASES += _prologue(UNBLOCK, _unblock, 0, 0, walk_fail=(NO_TABLE_GPA, 0))
CASES += [
    C(f"{UNBLOCK}: success", "finalized",
      lambda w: (_block_track(w, 0, 0), _unblock(w, w.tdr, 0, 0))[1], OK),
    C(f"{UNBLOCK}: entry not blocked", "finalized",
      lambda w: _unblock(w, w.tdr, 0, 0), st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX),
    C(f"{UNBLOCK}: block epoch not tracked (1.5.05)", "finalized",
      lambda w: (_block(w, w.tdr, 0, 0), _unblock(w, w.tdr, 0, 0))[1],
      st.TDX_TLB_TRACKING_NOT_DONE | RCX),
]

# --- TDH.MEM.TRACK ------------------------------------------------------------------------------
TRACK = "TDH.MEM.TRACK"
CASES += [
    C(f"{TRACK}: TDR not 4K aligned", "finalized",
      lambda w: _track(w, w.tdr + 8), st.TDX_OPERAND_INVALID | RCX),
    C(f"{TRACK}: TDR outside every TDMR", "finalized",
      lambda w: _track(w, OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX),
    C(f"{TRACK}: TDR PAMT entry busy", "finalized",
      lambda w: (_hold_tdr(w), _track(w, w.tdr))[1], st.TDX_OPERAND_BUSY | RCX),
    C(f"{TRACK}: not a TDR", "finalized",
      lambda w: _track(w, w.vp), st.TDX_PAGE_METADATA_INCORRECT | RCX),
    C(f"{TRACK}: TD fatal", "finalized",
      lambda w: (_fatal(w), _track(w, w.tdr))[1], st.TDX_TD_FATAL),
    C(f"{TRACK}: keys not configured", "created",
      lambda w: _track(w, w.tdr), st.TDX_TD_KEYS_NOT_CONFIGURED),
    C(f"{TRACK}: TDCS not allocated", "created",
      lambda w: (_tdcs_missing(w), _track(w, w.tdr))[1], st.TDX_TDCS_NOT_ALLOCATED),
    C(f"{TRACK}: OP_STATE lock busy", "finalized",
      lambda w: (_hold_op_state(w), _track(w, w.tdr))[1],
      st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_OP_STATE),
    C(f"{TRACK}: op-state not allowed", "keys_configured",
      lambda w: _track(w, w.tdr), st.TDX_OP_STATE_INCORRECT),
    C(f"{TRACK}: epoch lock busy", "finalized",
      lambda w: (_hold_epoch(w), _track(w, w.tdr))[1],
      st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TD_EPOCH),
    C(f"{TRACK}: previous epoch busy", "finalized",
      lambda w: (w.enter(), _track(w, w.tdr), _track(w, w.tdr))[2],
      st.TDX_PREVIOUS_TLB_EPOCH_BUSY),
    C(f"{TRACK}: success", "finalized", lambda w: _track(w, w.tdr), OK),
]

# --- TDH.MEM.PAGE.REMOVE ------------------------------------------------------------------------
REMOVE = "TDH.MEM.PAGE.REMOVE"
CASES += _prologue(REMOVE, _remove, 0, 0, walk_fail=(NO_TABLE_GPA, 0))
CASES += [
    C(f"{REMOVE}: level 3", "finalized",
      lambda w: _remove(w, w.tdr, 0, 3), st.TDX_OPERAND_INVALID | RCX),
    C(f"{REMOVE}: entry is a table", "finalized",
      lambda w: _remove(w, w.tdr, 0, 1), st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX),
    C(f"{REMOVE}: page PAMT entry busy", "finalized",
      lambda w: (w.m.pamt.entry(w.td.private[0] >> 12).lock.try_shared("other"),
                 _remove(w, w.tdr, 0, 0))[1], st.TDX_OPERAND_BUSY | RCX),
    C(f"{REMOVE}: not blocked (runnable TD)", "finalized",
      lambda w: _remove(w, w.tdr, 0, 0), st.TDX_GPA_RANGE_NOT_BLOCKED | RCX),
    C(f"{REMOVE}: block epoch not tracked", "finalized",
      lambda w: (_block(w, w.tdr, 0, 0), _remove(w, w.tdr, 0, 0))[1],
      st.TDX_TLB_TRACKING_NOT_DONE | RCX),
    C(f"{REMOVE}: success (4K)", "finalized",
      lambda w: (_block_track(w, 0, 0), _remove(w, w.tdr, 0, 0))[1], OK),
    C(f"{REMOVE}: success (2M)", "finalized",
      lambda w: (_aug_2m(w), _block_track(w, BIG, 1), _remove(w, w.tdr, BIG, 1))[2], OK),
]

# --- TDH.MEM.SEPT.REMOVE ------------------------------------------------------------------------
SEPT_REMOVE = "TDH.MEM.SEPT.REMOVE"
CASES += _prologue(SEPT_REMOVE, _sept_remove, 0, 1, walk_fail=(0x4000_0000, 1))
CASES += [
    C(f"{SEPT_REMOVE}: version 2", "finalized",
      lambda w: w.m.seamcall(2 << 16 | 30, 1, w.tdr),
      st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX),
    C(f"{SEPT_REMOVE}: level 0", "finalized",
      lambda w: _sept_remove(w, w.tdr, 0, 0), st.TDX_OPERAND_INVALID | RCX),
    C(f"{SEPT_REMOVE}: entry is not a table", "finalized",
      lambda w: _sept_remove(w, w.tdr, BIG, 1), st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX),
    C(f"{SEPT_REMOVE}: S-EPT page PAMT entry busy", "finalized",
      lambda w: (w.m.pamt.entry(w.td.sept_pages[(1, 0)] >> 12).lock.try_shared("other"),
                 _sept_remove(w, w.tdr, 0, 1))[1], st.TDX_OPERAND_BUSY | RCX),
    C(f"{SEPT_REMOVE}: not blocked", "finalized",
      lambda w: _sept_remove(w, w.tdr, 0, 1), st.TDX_GPA_RANGE_NOT_BLOCKED | RCX),
    C(f"{SEPT_REMOVE}: not tracked", "finalized",
      lambda w: (_block(w, w.tdr, 0, 1), _sept_remove(w, w.tdr, 0, 1))[1],
      st.TDX_TLB_TRACKING_NOT_DONE | RCX),
    C(f"{SEPT_REMOVE}: page still maps entries", "finalized",
      lambda w: (_block_track(w, 0, 1), _sept_remove(w, w.tdr, 0, 1))[1],
      st.TDX_EPT_PAGE_NOT_FREE | RCX),
    C(f"{SEPT_REMOVE}: success", "finalized",
      lambda w: (_sept_add(w, w.tdr, BIG, 1), _block_track(w, BIG, 1),
                 _sept_remove(w, w.tdr, BIG, 1))[2], OK),
]

# --- TDH.MEM.SEPT.RD ----------------------------------------------------------------------------
SEPT_RD = "TDH.MEM.SEPT.RD"
CASES += _prologue(SEPT_RD, _sept_rd, 0, 0, walk_fail=(NO_TABLE_GPA, 0))
CASES += [
    C(f"{SEPT_RD}: L2 attributes of a non-debug TD", "finalized",
      lambda w: _sept_rd(w, w.tdr | 1, 0, 0), st.TDX_OPERAND_INVALID | RDX),
    C(f"{SEPT_RD}: success", "finalized", lambda w: _sept_rd(w, w.tdr, 0, 0), OK),
]

# --- TDH.MEM.PAGE.DEMOTE ------------------------------------------------------------------------
DEMOTE = "TDH.MEM.PAGE.DEMOTE"
CASES += _prologue(DEMOTE, _demote, 0, 1, walk_fail=(0x4000_0000, 1))
CASES += [
    C(f"{DEMOTE}: level 0", "finalized",
      lambda w: _demote(w, w.tdr, 0, 0), st.TDX_OPERAND_INVALID | RCX),
    C(f"{DEMOTE}: entry is a table", "finalized",
      lambda w: _demote(w, w.tdr, 0, 1), st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX),
    C(f"{DEMOTE}: not blocked", "finalized",
      lambda w: (_aug_2m(w), _demote(w, w.tdr, BIG, 1))[1], st.TDX_GPA_RANGE_NOT_BLOCKED | RCX),
    C(f"{DEMOTE}: not tracked", "finalized",
      lambda w: (_aug_2m(w), _block(w, w.tdr, BIG, 1), _demote(w, w.tdr, BIG, 1))[2],
      st.TDX_TLB_TRACKING_NOT_DONE | RCX),
    C(f"{DEMOTE}: new S-EPT page not PT_NDA", "finalized",
      lambda w: (_aug_2m(w), _block_track(w, BIG, 1),
                 _demote(w, w.tdr, BIG, 1, w.td.private[0]))[2],
      st.TDX_PAGE_METADATA_INCORRECT | R8),
    C(f"{DEMOTE}: new S-EPT page outside every TDMR", "finalized",
      lambda w: (_aug_2m(w), _block_track(w, BIG, 1), _demote(w, w.tdr, BIG, 1, OUTSIDE))[2],
      st.TDX_OPERAND_ADDR_RANGE_ERROR | R8),
    C(f"{DEMOTE}: new S-EPT page misaligned", "finalized",
      lambda w: (_aug_2m(w), _block_track(w, BIG, 1),
                 _demote(w, w.tdr, BIG, 1, w.b.page() + 8))[2], st.TDX_OPERAND_INVALID | R8),
    C(f"{DEMOTE}: new S-EPT page busy", "finalized",
      lambda w: (_aug_2m(w), _block_track(w, BIG, 1), _demote(w, w.tdr, BIG, 1, w.tdr))[2],
      st.TDX_OPERAND_BUSY | R8),
    C(f"{DEMOTE}: PAMT_2M entry busy (pamt_demote)", "finalized",
      lambda w: (w.m.pamt.range_entry(_aug_2m(w)).lock.try_shared("other"),
                 _block_track(w, BIG, 1), _demote(w, w.tdr, BIG, 1))[2],
      st.TDX_OPERAND_BUSY | RCX),
    C(f"{DEMOTE}: success", "finalized",
      lambda w: (_aug_2m(w), _block_track(w, BIG, 1), _demote(w, w.tdr, BIG, 1))[2], OK),
]

# --- TDH.MEM.PAGE.PROMOTE -----------------------------------------------------------------------
PROMOTE = "TDH.MEM.PAGE.PROMOTE"
CASES += _prologue(PROMOTE, _promote, 0, 1, walk_fail=(0x4000_0000, 1))
CASES += [
    C(f"{PROMOTE}: version 2", "finalized",
      lambda w: w.m.seamcall(2 << 16 | 23, 1, w.tdr),
      st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX),
    C(f"{PROMOTE}: level 0", "finalized",
      lambda w: _promote(w, w.tdr, 0, 0), st.TDX_OPERAND_INVALID | RCX),
    C(f"{PROMOTE}: entry is a page", "finalized",
      lambda w: (_aug_2m(w), _promote(w, w.tdr, BIG, 1))[1],
      st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX),
    C(f"{PROMOTE}: S-EPT page PAMT entry busy", "finalized",
      lambda w: (w.m.pamt.entry(w.td.sept_pages[(1, 0)] >> 12).lock.try_shared("other"),
                 _promote(w, w.tdr, 0, 1))[1], st.TDX_OPERAND_BUSY | RCX),
    C(f"{PROMOTE}: not blocked", "finalized",
      lambda w: _promote(w, w.tdr, 0, 1), st.TDX_GPA_RANGE_NOT_BLOCKED | RCX),
    C(f"{PROMOTE}: not tracked", "finalized",
      lambda w: (_block(w, w.tdr, 0, 1), _promote(w, w.tdr, 0, 1))[1],
      st.TDX_TLB_TRACKING_NOT_DONE | RCX),
    C(f"{PROMOTE}: a child entry busy", "finalized",
      lambda w: (_demoted(w), _hold_entry(w, BIG + 0x3000, 0), _promote(w, w.tdr, BIG, 1))[2],
      st.TDX_OPERAND_BUSY | RCX),
    C(f"{PROMOTE}: children not one 2M page", "finalized",
      lambda w: (_block_track(w, 0, 1), _promote(w, w.tdr, 0, 1))[1],
      st.TDX_EPT_INVALID_PROMOTE_CONDITIONS | RCX),
    C(f"{PROMOTE}: PAMT_2M entry busy (pamt_promote)", "finalized",
      lambda w: (_demoted(w),
                 w.m.pamt.range_entry(_td(w).tdcs.sept.entries[(0, BIG)].hpa)
                 .lock.try_shared("other"), _promote(w, w.tdr, BIG, 1))[2],
      st.TDX_OPERAND_BUSY | RCX),
    C(f"{PROMOTE}: success", "finalized",
      lambda w: (_demoted(w), _promote(w, w.tdr, BIG, 1))[1], OK),
]

# --- TDH.VP.ENTER and its TD exit ---------------------------------------------------------------
ENTER = "TDH.VP.ENTER"


def _enter(w, vp=None, lp=None):
    vp = w.vp if vp is None else vp
    return w.m.tdh_vp_enter(vp, lp=w.vp_lp if lp is None else lp)


def _uninit_vcpu(w, tdcx=None):
    vp = w.b.page()
    assert w.m.tdh_vp_create(w.tdr, vp).status == OK
    for _ in range(w.m.tdcx_per_vcpu if tdcx is None else tdcx):
        assert w.m.tdh_vp_addcx(vp, w.b.page()).status == OK
    assert w.m.tdh_mr_finalize(w.tdr).status == OK
    return vp


CASES += [
    C(f"{ENTER}: TDVPR not 4K aligned", "finalized",
      lambda w: _enter(w, w.vp + 8), st.TDX_OPERAND_INVALID | RCX),
    C(f"{ENTER}: TDVPR outside every TDMR", "finalized",
      lambda w: _enter(w, OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX),
    C(f"{ENTER}: TDVPR PAMT entry busy", "finalized",
      lambda w: (_hold_tdvpr(w), _enter(w))[1], st.TDX_OPERAND_BUSY | RCX),
    C(f"{ENTER}: not a TDVPR", "finalized",
      lambda w: _enter(w, w.tdr), st.TDX_PAGE_METADATA_INCORRECT | RCX),
    C(f"{ENTER}: TDR (implicit) busy", "finalized",
      lambda w: (_hold_tdr(w), _enter(w))[1], st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TDR),
    C(f"{ENTER}: TD fatal", "finalized",
      lambda w: (_fatal(w), _enter(w))[1], st.TDX_TD_FATAL),
    C(f"{ENTER}: keys not configured (TD_BLOCKED)", "finalized",
      lambda w: (w.to_blocked(), _enter(w))[1], st.TDX_TD_KEYS_NOT_CONFIGURED),
    C(f"{ENTER}: OP_STATE lock busy", "finalized",
      lambda w: (_hold_op_state(w), _enter(w))[1],
      st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_OP_STATE),
    C(f"{ENTER}: op-state not RUNNABLE", "initialized",
      lambda w: _enter(w), st.TDX_OP_STATE_INCORRECT),
    C(f"{ENTER}: TDCX pages missing", "initialized",
      lambda w: _enter(w, _uninit_vcpu(w, tdcx=1), 0), st.TDX_TDCX_NUM_INCORRECT),
    C(f"{ENTER}: vCPU not initialised", "initialized",
      lambda w: _enter(w, _uninit_vcpu(w), 0), st.TDX_VCPU_STATE_INCORRECT),
    C(f"{ENTER}: vCPU associated with another LP", "finalized",
      lambda w: _enter(w, lp=w.other_lp(w.vp_lp)), st.TDX_VCPU_ASSOCIATED),
    C(f"{ENTER}: TD epoch lock busy", "finalized",
      lambda w: (_hold_epoch(w), _enter(w))[1], st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TD_EPOCH),
    C(f"{ENTER}: 0-step check, tree busy", "finalized",
      lambda w: (_arm_zero_step(w), _hold_tree(w), _enter(w))[2],
      st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT),
    C(f"{ENTER}: 0-step check fails (EPT-violation exit)", "finalized",
      lambda w: (_arm_zero_step(w), _enter(w))[1], OK),
    C(f"{ENTER}: success", "finalized", lambda w: _enter(w), OK),
]

# --- guest TDCALLs ------------------------------------------------------------------------------
ACCEPT = "TDG.MEM.PAGE.ACCEPT"


def _accept(w, gpa, level=0):
    return w.m.tdg_mem_page_accept(w.vp, gpa, level, lp=w.vp_lp)


def _guest_lock(w, gpa, level=0):
    assert _td(w).tdcs.sept.entry_at(gpa, level).lock.try_guest("other") == "ok"


CASES += [
    C(f"{ACCEPT}: vCPU not in the guest (model rule)", "finalized",
      lambda w: _accept(w, FREE_GPA), st.TDX_VCPU_STATE_INCORRECT),
    C(f"{ACCEPT}: level 2", "finalized",
      lambda w: (_in_guest(w), _accept(w, 0, 2))[1], st.TDX_OPERAND_INVALID | RCX),
    C(f"{ACCEPT}: GPA shared", "finalized",
      lambda w: (_in_guest(w), _accept(w, FREE_GPA | 1 << 47))[1], st.TDX_OPERAND_INVALID | RCX),
    C(f"{ACCEPT}: walk stops at a mapped 2M page", "finalized",
      lambda w: (_aug_2m(w), _in_guest(w), _accept(w, BIG, 1), _accept(w, BIG + 0x1000))[3],
      st.TDX_PAGE_ALREADY_ACCEPTED | 1),
    C(f"{ACCEPT}: walk stops at a blocked table (EPT-violation exit)", "finalized",
      lambda w: (w.b.aug(w.td, FREE_GPA), _block(w, w.tdr, 0, 1), _in_guest(w),
                 _accept(w, FREE_GPA))[3], OK),
    C(f"{ACCEPT}: entry held by the guest", "finalized",
      lambda w: (w.b.aug(w.td, FREE_GPA), _in_guest(w), _guest_lock(w, FREE_GPA),
                 _accept(w, FREE_GPA))[3], st.TDX_OPERAND_BUSY | RCX),
    C(f"{ACCEPT}: host priority after a host lost the entry", "finalized",
      lambda w: (w.b.aug(w.td, FREE_GPA), _in_guest(w), _guest_lock(w, FREE_GPA),
                 _block(w, w.tdr, FREE_GPA, 0),
                 _td(w).tdcs.sept.entry_at(FREE_GPA, 0).lock.release("other"),
                 _accept(w, FREE_GPA))[5], st.TDX_OPERAND_BUSY_HOST_PRIORITY | RCX),
    C(f"{ACCEPT}: 2M request over a table", "finalized",
      lambda w: (_in_guest(w), _accept(w, 0, 1))[1], st.TDX_PAGE_SIZE_MISMATCH | 1),
    C(f"{ACCEPT}: already accepted", "finalized",
      lambda w: (_in_guest(w), _accept(w, 0))[1], st.TDX_PAGE_ALREADY_ACCEPTED),
    C(f"{ACCEPT}: success", "finalized",
      lambda w: (w.b.aug(w.td, FREE_GPA), _in_guest(w), _accept(w, FREE_GPA))[2], OK),
]

ATTR_RD = "TDG.MEM.PAGE.ATTR.RD"
ATTR_WR = "TDG.MEM.PAGE.ATTR.WR"


def _attr_rd(w, gpa):
    return w.m.tdg_mem_page_attr_rd(w.vp, gpa, lp=w.vp_lp)


def _attr_wr(w, gpa, level=0, attrs=0, flags=0):
    return w.m.tdg_mem_page_attr_wr(w.vp, gpa, level, attrs, flags, lp=w.vp_lp)


CASES += [
    C(f"{ATTR_RD}: vCPU not in the guest (model rule)", "finalized",
      lambda w: _attr_rd(w, 0), st.TDX_VCPU_STATE_INCORRECT),
    C(f"{ATTR_RD}: GPA shared", "finalized",
      lambda w: (_in_guest(w), _attr_rd(w, 1 << 47))[1], st.TDX_OPERAND_INVALID | RCX),
    C(f"{ATTR_RD}: entry held by the guest", "finalized",
      lambda w: (_in_guest(w), _guest_lock(w, 0), _attr_rd(w, 0))[2], st.TDX_OPERAND_BUSY | RCX),
    C(f"{ATTR_RD}: host priority", "finalized",
      lambda w: (_in_guest(w), _guest_lock(w, 0), _block(w, w.tdr, 0, 0),
                 _td(w).tdcs.sept.entry_at(0, 0).lock.release("other"), _attr_rd(w, 0))[4],
      st.TDX_OPERAND_BUSY_HOST_PRIORITY | RCX),
    C(f"{ATTR_RD}: FREE entry (EPT-violation exit)", "finalized",
      lambda w: (_in_guest(w), _attr_rd(w, FREE_GPA))[1], OK),
    C(f"{ATTR_RD}: success", "finalized", lambda w: (_in_guest(w), _attr_rd(w, 0))[1], OK),
    C(f"{ATTR_WR}: vCPU not in the guest (model rule)", "finalized",
      lambda w: _attr_wr(w, 0), st.TDX_VCPU_STATE_INCORRECT),
    C(f"{ATTR_WR}: attributes without L2 VMs", "finalized",
      lambda w: (_in_guest(w), _attr_wr(w, 0, attrs=1))[1], st.TDX_OPERAND_INVALID | RDX),
    C(f"{ATTR_WR}: flags without L2 VMs", "finalized",
      lambda w: (_in_guest(w), _attr_wr(w, 0, flags=1))[1], st.TDX_OPERAND_INVALID | R8),
    C(f"{ATTR_WR}: level 3", "finalized",
      lambda w: (_in_guest(w), _attr_wr(w, 0, 3))[1], st.TDX_OPERAND_INVALID | RCX),
    C(f"{ATTR_WR}: walk fails (EPT-violation exit)", "finalized",
      lambda w: (_in_guest(w), _attr_wr(w, NO_TABLE_GPA))[1], OK),
    C(f"{ATTR_WR}: entry held by the guest", "finalized",
      lambda w: (_in_guest(w), _guest_lock(w, 0), _attr_wr(w, 0))[2], st.TDX_OPERAND_BUSY | RCX),
    C(f"{ATTR_WR}: host priority", "finalized",
      lambda w: (_in_guest(w), _guest_lock(w, 0), _block(w, w.tdr, 0, 0),
                 _td(w).tdcs.sept.entry_at(0, 0).lock.release("other"), _attr_wr(w, 0))[4],
      st.TDX_OPERAND_BUSY_HOST_PRIORITY | RCX),
    C(f"{ATTR_WR}: 2M request over a table", "finalized",
      lambda w: (_in_guest(w), _attr_wr(w, 0, 1))[1], st.TDX_PAGE_SIZE_MISMATCH | 1),
    C(f"{ATTR_WR}: success", "finalized", lambda w: (_in_guest(w), _attr_wr(w, 0))[1], OK),
]

# --- Dynamic PAMT: TDH.PHYMEM.PAMT.ADD / REMOVE (own module, the world is not used) ------------
M2 = 2 << 20
PAMT_ADD, PAMT_REMOVE = "TDH.PHYMEM.PAMT.ADD", "TDH.PHYMEM.PAMT.REMOVE"


def _dp(setup=None, *, dynamic=True):
    """A fresh 16 MiB module (Dynamic PAMT on), after `setup(m)`."""
    from tdxedu.tdx import TdxModule

    m = TdxModule(memory=16 << 20, dynamic_pamt=dynamic)
    if setup is not None:
        setup(m)
    return m


def _add(m, hpa=M2, p0=3 * M2, p1=3 * M2 + 4096):
    return m.tdh_phymem_pamt_add(hpa, p0, p1)


def _hold_range(m, pa, exclusive=True):
    lock = m.pamt.range_entry(pa).lock
    assert lock.try_exclusive("other") if exclusive else lock.try_shared("other")


def _use_4k(m, pa):
    m.pamt.entry(pa >> 12).pt = PageType.PT_REG


def _dp_td():
    """A Dynamic PAMT module and a finalized TD living in range 0 (covered by a pair)."""
    from tdxedu.tdx.testing import TdBuilder

    m = _dp()
    assert _add(m, 0, 7 * M2, 7 * M2 + 4096).status == OK
    return m, TdBuilder(m).build("finalized")


def _covered(m):
    """Range 0 covered by a pair from range 7, and a 4K TD page in it (PAMT_4K entry used)."""
    assert _add(m, 0, 7 * M2, 7 * M2 + 4096).status == OK
    from tdxedu.tdx.testing import TdBuilder

    TdBuilder(m).build("created")


CASES += [
    C(f"{PAMT_ADD}: Dynamic PAMT off", "created",
      lambda w: _add(_dp(dynamic=False)), st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX),
    C(f"{PAMT_ADD}: range not 2M aligned", "created",
      lambda w: _add(_dp(), M2 + 4096), st.TDX_OPERAND_INVALID | RCX),
    C(f"{PAMT_ADD}: page 0 not 4K aligned", "created",
      lambda w: _add(_dp(), p0=3 * M2 + 8), st.TDX_OPERAND_INVALID | RDX),
    C(f"{PAMT_ADD}: page 0 outside every TDMR", "created",
      lambda w: _add(_dp(), p0=OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | RDX),
    C(f"{PAMT_ADD}: page 1 not 4K aligned", "created",
      lambda w: _add(_dp(), p1=3 * M2 + 8), st.TDX_OPERAND_INVALID | R8),
    C(f"{PAMT_ADD}: page 1 outside every TDMR", "created",
      lambda w: _add(_dp(), p1=OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | R8),
    C(f"{PAMT_ADD}: range outside every TDMR", "created",
      lambda w: _add(_dp(), OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX),
    C(f"{PAMT_ADD}: PAMT_2M entry busy", "created",
      lambda w: _add(_dp(lambda m: _hold_range(m, M2))), st.TDX_OPERAND_BUSY | RCX),
    C(f"{PAMT_ADD}: range already covered", "created",
      lambda w: _add(_dp(lambda m: _add(m))), st.TDX_HPA_RANGE_NOT_FREE | RCX),
    C(f"{PAMT_ADD}: page 0's range busy", "created",
      lambda w: _add(_dp(lambda m: _hold_range(m, 3 * M2))), st.TDX_OPERAND_BUSY | RDX),
    C(f"{PAMT_ADD}: page 1's range busy", "created",
      lambda w: _add(_dp(lambda m: _hold_range(m, 5 * M2)), p1=5 * M2),
      st.TDX_OPERAND_BUSY | R8),
    C(f"{PAMT_ADD}: page 0 is a TD page", "created",
      lambda w: (lambda m: _add(m, M2, next(iter(m.tds)), 3 * M2))(_dp(_covered)),
      st.TDX_PAGE_NOT_FREE | RDX),
    C(f"{PAMT_ADD}: page 1 is a TD page", "created",
      lambda w: (lambda m: _add(m, M2, 3 * M2, next(iter(m.tds))))(_dp(_covered)),
      st.TDX_PAGE_NOT_FREE | R8),
    C(f"{PAMT_ADD}: page 0 already a PAMT page", "created",
      lambda w: _add(_dp(lambda m: _add(m, 2 * M2, 3 * M2, 4 * M2)), M2, 3 * M2, 5 * M2),
      st.TDX_PAGE_NOT_FREE | RDX),
    C(f"{PAMT_ADD}: page 1 already a PAMT page", "created",
      lambda w: _add(_dp(lambda m: _add(m, 2 * M2, 3 * M2, 4 * M2)), M2, 5 * M2, 4 * M2),
      st.TDX_PAGE_NOT_FREE | R8),
    C(f"{PAMT_ADD}: success", "created", lambda w: _add(_dp()), OK),
    C(f"{PAMT_REMOVE}: Dynamic PAMT off", "created",
      lambda w: _dp(dynamic=False).tdh_phymem_pamt_remove(M2),
      st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX),
    C(f"{PAMT_REMOVE}: range not 2M aligned", "created",
      lambda w: _dp().tdh_phymem_pamt_remove(M2 + 4096), st.TDX_OPERAND_INVALID | RCX),
    C(f"{PAMT_REMOVE}: range outside every TDMR", "created",
      lambda w: _dp().tdh_phymem_pamt_remove(OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX),
    C(f"{PAMT_REMOVE}: PAMT_2M entry busy", "created",
      lambda w: _dp(lambda m: _hold_range(m, M2)).tdh_phymem_pamt_remove(M2),
      st.TDX_OPERAND_BUSY | RCX),
    C(f"{PAMT_REMOVE}: no pair", "created",
      lambda w: _dp().tdh_phymem_pamt_remove(M2), st.TDX_NO_PAMT_PAGE_PAIR | RCX),
    C(f"{PAMT_REMOVE}: a 4K page in use (first PAMT page)", "created",
      lambda w: _dp(lambda m: (_add(m), _use_4k(m, M2 + 5 * 4096))).tdh_phymem_pamt_remove(M2),
      st.TDX_PAMT_PAGE_NOT_EMPTY),
    C(f"{PAMT_REMOVE}: a 4K page in use (second PAMT page)", "created",
      lambda w: _dp(_covered).tdh_phymem_pamt_remove(0), st.TDX_PAMT_PAGE_NOT_EMPTY | 1),
    C(f"{PAMT_REMOVE}: success", "created",
      lambda w: _dp(_add).tdh_phymem_pamt_remove(M2), OK),
    C(f"{AUG}: no PAMT page pair (Dynamic PAMT)", "created",
      lambda w: (lambda m, td: m.tdh_mem_page_aug(td.tdr, FREE_GPA, 0, 5 * M2))(*_dp_td()),
      st.TDX_MISSING_PAMT_PAGE_PAIR | R8),
]
