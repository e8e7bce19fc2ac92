"""TDH.VP.ENTER, its TD exit and the guest TDCALLs against TDX module 1.5 (TDX 1.5.05,
niooss-ledger/tdx-module `f99767b`; same in 1.5.01 unless a test says so):
`src/td_transitions/tdh_vp_enter.c`, `td_exit.c`, `td_exit_stepping.c`,
`src/common/helpers/helpers.c` (`check_any_td_state_map_tdcs_and_lock`,
`check_and_associate_vcpu`, `adjust_tlb_tracking_state`), and
`src/td_dispatcher/vm_exits/tdg_mem_page_accept.c`, `tdg_mem_page_attr_rd.c`,
`tdg_mem_page_attr_wr.c`. Each test failed on the model before the fix it pins, except those
marked "(pin)", which keep a rule that was already right.
"""

from __future__ import annotations

from tdx_cases import FREE_GPA, finish

from tdxedu.tdx import status as st
from tdxedu.tdx.sept import SHARED_BIT, SeptState
from tdxedu.tdx.td import STEPPING_EPF_THRESHOLD, Lifecycle

RCX, RDX, R8 = st.TDX_OPERAND_ID_RCX, st.TDX_OPERAND_ID_RDX, st.TDX_OPERAND_ID_R8
OK = st.TDX_SUCCESS
SEPT_BUSY = st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT
EPOCH_BUSY = st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TD_EPOCH


def _fault(w, gpa=FREE_GPA, n=1, progressed=False):
    for _ in range(n):
        w.enter()
        assert w.exit(reason="EPT_VIOLATION", gpa=gpa, progressed=progressed).status == OK


def _takes_tree(w) -> bool:
    """Does the next VP.ENTER stop in its 0-step check (S-EPT tree held exclusively)?"""
    g = w.m.stepwise("tdh_vp_enter", w.vp, lp=w.vp_lp)
    try:
        next(g)
    except StopIteration as stop:
        res = stop.value
        if res.ok and not res.exit_reason:
            w.exit(progressed=False)
        return False
    finish(g)
    if w.m.vcpus[w.vp].in_guest:
        w.exit(progressed=False)
    return True


# --- TDH.VP.ENTER: order of checks -----------------------------------------------------------
def test_vp_enter_fatal_before_keys(td_at):
    """helpers.c check_td_in_correct_build_state: TD_FATAL is tested before the lifecycle, so a
    fatal TD out of TD_KEYS_CONFIGURED gets TDX_TD_FATAL (the model tested the lifecycle first)."""
    w = td_at("finalized")
    td = w.m.td(w.tdr)
    td.fatal, td.lifecycle = True, Lifecycle.TD_BLOCKED
    assert w.m.tdh_vp_enter(w.vp, lp=w.vp_lp).status == st.TDX_TD_FATAL


def test_vp_enter_tdcx_count_before_vcpu_state(td_at):
    """tdh_vp_enter.c: map_tdvps (TDX_TDCX_NUM_INCORRECT) comes before check_and_associate_vcpu
    (TDX_VCPU_STATE_INCORRECT): a vCPU missing TDCX pages gets the former."""
    w = td_at("initialized")
    vp = w.b.page()
    assert w.m.tdh_vp_create(w.tdr, vp).status == OK
    assert w.m.tdh_vp_addcx(vp, w.b.page()).status == OK
    assert w.m.tdh_mr_finalize(w.tdr).status == OK
    assert w.m.tdh_vp_enter(vp, lp=0).status == st.TDX_TDCX_NUM_INCORRECT


def test_epoch_busy_after_association(td_at):
    """tdh_vp_enter.c: check_and_associate_vcpu runs before adjust_tlb_tracking_state, so a
    VP.ENTER that finds the epoch lock taken (TRACK mid-call) fails with BUSY | TD_EPOCH but
    leaves the vCPU associated with this LP."""
    w = td_at("finalized")
    assert w.m.tdh_vp_flush(w.vp, lp=w.vp_lp).status == OK
    vp = w.m.vcpus[w.vp]
    assert vp.assoc_lpid == -1
    track = w.m.stepwise("tdh_mem_track", w.tdr, lp=3)
    next(track)  # epoch lock held exclusively
    assert w.m.tdh_vp_enter(w.vp, lp=2).status == EPOCH_BUSY
    assert vp.assoc_lpid == 2 and w.m.td(w.tdr).tdcs.num_assoc_vcpus == 1
    assert finish(track).status == OK
    assert not w.m.check_invariants()


def test_epoch_lock_not_held_during_zero_step_check(td_at):
    """helpers.c adjust_tlb_tracking_state takes the epoch lock shared only around the REFCOUNT
    increment and releases it before the 0-step filter takes the S-EPT tree: TRACK succeeds
    while VP.ENTER is in its 0-step check, and the entering vCPU already counts in the epoch
    (so a second TRACK finds the previous epoch busy)."""
    w = td_at("finalized")
    _fault(w, n=STEPPING_EPF_THRESHOLD + 1)
    g = w.m.stepwise("tdh_vp_enter", w.vp, lp=w.vp_lp)
    next(g)
    tdcs = w.m.td(w.tdr).tdcs
    assert tdcs.epoch_lock.free and tdcs.sept_lock.writer
    assert w.m.tdh_mem_track(w.tdr, lp=3).status == OK
    assert w.m.tdh_mem_track(w.tdr, lp=3).status == st.TDX_PREVIOUS_TLB_EPOCH_BUSY
    assert finish(g).exit_reason == "EPT_VIOLATION"  # FREE_GPA still unmapped
    assert w.m.tdh_mem_track(w.tdr, lp=3).status == OK  # the revert emptied the old epoch
    assert not w.m.check_invariants()


def test_zero_step_tree_busy_reverts_refcount(td_at):
    """tdh_vp_enter.c handle_stepping_filter: if the tree is busy, revert_tlb_tracking_state
    undoes the REFCOUNT increment and VP.ENTER returns BUSY | SEPT_TREE."""
    w = td_at("finalized")
    _fault(w, n=STEPPING_EPF_THRESHOLD + 1)
    block = w.m.stepwise("tdh_mem_range_block", w.tdr, 0, 0, lp=3)
    next(block)  # S-EPT tree held exclusively
    assert w.m.tdh_vp_enter(w.vp, lp=w.vp_lp).status == SEPT_BUSY
    assert w.m.td(w.tdr).tdcs.refcount == [0, 0]
    assert finish(block).status == OK
    assert not w.m.check_invariants()


def test_emulated_ept_violation_registers(td_at):
    """tdh_vp_enter.c emulate_ept_violation_td_exit: RAX = exit reason EPT violation, RCX =
    exit qualification with the write bit (bit 1), R8 = the faulting GPA (what KVM's
    tdexit_gpa() reads); the vCPU stays out of the guest and counts in no epoch."""
    w = td_at("finalized")
    _fault(w, n=STEPPING_EPF_THRESHOLD + 1)
    res = w.m.tdh_vp_enter(w.vp, lp=w.vp_lp)
    assert res.status == OK and res.exit_reason == "EPT_VIOLATION"
    assert (res.rcx, res.r8) == (0x2, FREE_GPA)
    assert not w.m.vcpus[w.vp].in_guest and w.m.td(w.tdr).tdcs.refcount == [0, 0]


# --- 0-step mitigation: thresholds and list lifetime -----------------------------------------
def test_zero_step_threshold_is_after_six(td_at):
    """td_exit_stepping.c td_exit_epf_stepping_log: POSSIBLY_EPF_STEPPING counts up to
    STEPPING_EPF_THRESHOLD = 6; only a fault beyond that records its GPA. Six faults at one
    RIP leave the list empty, the seventh arms the 0-step check."""
    w = td_at("finalized")
    _fault(w, n=STEPPING_EPF_THRESHOLD)
    assert w.m.vcpus[w.vp].epf_gpas == [] and not _takes_tree(w)
    _fault(w)
    assert w.m.vcpus[w.vp].epf_gpas == [FREE_GPA]


def test_progressed_fault_counts_one(td_at):
    """td_exit_stepping.c: a fault after guest progress first resets the count and the list,
    then counts itself (the model reset to 0 and did not count it)."""
    w = td_at("finalized")
    _fault(w, n=3)
    _fault(w, progressed=True)
    assert w.m.vcpus[w.vp].epf_count == 1


def test_shared_gpa_fault_is_not_logged(td_at):
    """td_ept_violation.c logs 0-step faults only for a private GPA (shared bit clear)."""
    w = td_at("finalized")
    _fault(w, gpa=SHARED_BIT | FREE_GPA, n=STEPPING_EPF_THRESHOLD + 2)
    assert w.m.vcpus[w.vp].epf_count == 0 and w.m.vcpus[w.vp].epf_gpas == []


def test_zero_step_list_survives_a_passed_check(td_at):
    """td_entry_stepping_filter never clears LAST_EPF_GPA_LIST: once the GPA translates again
    the check passes and the guest enters, but every VP.ENTER repeats the check (tree
    exclusive) until a TD exit after guest progress resets the list (vmexit_stepping_filter).
    The model cleared the list after the first passed check."""
    w = td_at("finalized")
    _fault(w, gpa=0, n=STEPPING_EPF_THRESHOLD + 1)
    assert _takes_tree(w) and _takes_tree(w)
    assert w.m.vcpus[w.vp].epf_gpas == [0]
    w.enter()
    w.exit(progressed=True)
    assert w.m.vcpus[w.vp].epf_gpas == [] and not _takes_tree(w)


def test_zero_step_check_needs_write_access(td_at):
    """td_exit_stepping.c is_epf_expected translates with RWX: a BLOCKEDW page (no W) or a
    page under a blocked table still faults, so VP.ENTER emulates the exit."""
    w = td_at("finalized")
    _fault(w, gpa=0, n=STEPPING_EPF_THRESHOLD + 1)
    assert w.m.tdh_mem_range_block(w.tdr, 0, 1).status == OK  # the table over GPA 0
    res = w.m.tdh_vp_enter(w.vp, lp=w.vp_lp)
    assert res.exit_reason == "EPT_VIOLATION" and res.r8 == 0


# --- TDG.MEM.PAGE.ACCEPT ---------------------------------------------------------------------
def test_accept_under_blocked_table_exits(td_at):
    """tdg_mem_page_accept.c: the walk (walk_private_gpa -> secure_ept_walk) stops at a table
    entry with RWX = 0 (NL_BLOCKED); that is not a guest-accessible leaf, so ACCEPT makes an
    EPT-violation TD exit (async_tdexit_ept_violation, type ACCEPT). The model raised
    AttributeError here."""
    w = td_at("finalized")
    w.b.aug(w.td, FREE_GPA)
    assert w.m.tdh_mem_range_block(w.tdr, 0, 1).status == OK
    w.enter()
    res = w.m.tdg_mem_page_accept(w.vp, FREE_GPA, 0, lp=w.vp_lp)
    assert res.status == OK and res.exit_reason == "EPT_VIOLATION" and res.r8 == FREE_GPA
    # extended exit qualification: type 1 (ACCEPT); info: requested level 0, stopped at level
    # 1, public state NL_BLOCKED (0x81), not a leaf
    assert res.rdx == 1 | (0 | 1 << 3 | 0x81 << 6) << 32
    assert res.rcx == 0x2  # a write, the blocked table grants no RWX
    assert not w.m.vcpus[w.vp].in_guest and not w.m.check_invariants()


def test_accept_already_accepted_reports_the_walk_level(td_at):
    """tdg_mem_page_accept.c: when the walk stops above the requested level at a
    guest-accessible leaf, PAGE_ALREADY_ACCEPTED carries the level where it stopped (a 2M
    page for a 4K request: operand 1), not the requested one. (Also: tdh_mem_page_aug.c
    accepts levels 4K and 2M, verify_page_info_input(LVL_PT, LVL_PD).)"""
    w = td_at("finalized")
    big = 0x20_0000
    w.b.map_tables(w.td, big, down_to=2)
    page = w.b.page_2m()
    assert w.m.tdh_mem_page_aug(w.tdr, big, 1, page).status == OK
    w.enter()
    assert w.m.tdg_mem_page_accept(w.vp, big, 1, lp=w.vp_lp).status == OK
    res = w.m.tdg_mem_page_accept(w.vp, big + 0x1000, 0, lp=w.vp_lp)
    assert res.status == st.TDX_PAGE_ALREADY_ACCEPTED | 1
    assert not w.m.check_invariants()


def test_accept_guest_lock_before_state(td_at):
    """tdg_mem_page_accept.c check_tdaccept_failure: the guest lock is taken before the state
    is read, so an entry a host SEAMCALL holds is BUSY | RCX even if it is not PENDING. (pin)"""
    w = td_at("finalized")
    w.enter()
    block = w.m.stepwise("tdh_mem_range_block", w.tdr, 0, 0, lp=3)
    next(block)  # host lock on the MAPPED entry of GPA 0
    res = w.m.tdg_mem_page_accept(w.vp, 0, 0, lp=w.vp_lp)
    assert res.status == st.TDX_OPERAND_BUSY | RCX
    finish(block)


# --- TDG.MEM.PAGE.ATTR.RD / WR ---------------------------------------------------------------
def test_attr_rd_reports_level_and_pending(td_at):
    """tdg_mem_page_attr_rd.c: RCX = GPA aligned to the mapping | level | PENDING (bit 62);
    RDX = attributes (0 without L2 VMs)."""
    w = td_at("finalized")
    w.b.aug(w.td, FREE_GPA)
    w.enter()
    res = w.m.tdg_mem_page_attr_rd(w.vp, FREE_GPA + 0x10, lp=w.vp_lp)
    assert res.status == OK and (res.rcx, res.rdx) == (FREE_GPA | 1 << 62, 0)
    assert w.m.tdg_mem_page_attr_rd(w.vp, 0, lp=w.vp_lp).rcx == 0  # MAPPED, level 0


def test_attr_rd_busy_against_host_then_host_priority(td_at):
    """tdg_mem_page_attr_rd.c takes the entry's guest lock (sept_lock_acquire_guest): BUSY |
    RCX while a host SEAMCALL holds it; once the host lost the entry, the guest gets
    BUSY_HOST_PRIORITY until the host wins (the guest side of the BUSY lock table)."""
    w = td_at("finalized")
    w.enter()
    attr = w.m.stepwise("tdg_mem_page_attr_rd", w.vp, 0, lp=w.vp_lp)
    next(attr)  # guest lock held
    assert w.m.tdh_mem_range_block(w.tdr, 0, 0, lp=3).status == st.TDX_OPERAND_BUSY | RCX
    assert finish(attr).status == OK
    res = w.m.tdg_mem_page_attr_rd(w.vp, 0, lp=w.vp_lp)
    assert res.status == st.TDX_OPERAND_BUSY_HOST_PRIORITY | RCX
    assert w.m.tdh_mem_range_block(w.tdr, 0, 0, lp=3).status == OK
    # BLOCKED is not readable by the guest: an EPT-violation exit
    assert w.m.tdg_mem_page_attr_rd(w.vp, 0, lp=w.vp_lp).exit_reason == "EPT_VIOLATION"


def test_attr_wr_operands_and_states(td_at):
    """tdg_mem_page_attr_wr.c with no L2 VM: attributes (RDX) then flags (R8) must be 0; a
    4K request under a non-free table is PAGE_SIZE_MISMATCH; a FREE entry is an EPT-violation
    exit of type ATTR_WR (5)."""
    w = td_at("finalized")
    w.enter()
    lp = w.vp_lp
    assert w.m.tdg_mem_page_attr_wr(w.vp, 0, 0, 1, 1, lp=lp).status == st.TDX_OPERAND_INVALID | RDX
    assert w.m.tdg_mem_page_attr_wr(w.vp, 0, 0, 0, 1, lp=lp).status == st.TDX_OPERAND_INVALID | R8
    assert w.m.tdg_mem_page_attr_wr(w.vp, 0, 3, lp=lp).status == st.TDX_OPERAND_INVALID | RCX
    assert w.m.tdg_mem_page_attr_wr(w.vp, 0, 1, lp=lp).status == st.TDX_PAGE_SIZE_MISMATCH | 1
    assert w.m.tdg_mem_page_attr_wr(w.vp, 0, 0, lp=lp).status == OK
    res = w.m.tdg_mem_page_attr_wr(w.vp, FREE_GPA, 0, lp=lp)
    assert res.exit_reason == "EPT_VIOLATION" and res.rdx & 0xF == 5
    assert w.m.td(w.tdr).tdcs.sept.entries[(0, 0)].state == SeptState.MAPPED
