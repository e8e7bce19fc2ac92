"""Table-driven tests for the runtime and teardown leaves, plus the contention scenarios.

Case ids start with their source as in test_leaves.py: a bibliography tag ("M15", "K616";
`tdxedu sources M15`) or "M:file.c" = TDX module 1.5 source file.
"""

from __future__ import annotations

import pytest
from tdx_cases import FREE_GPA, NO_TABLE_GPA, OUTSIDE, C, World, finish, new_module, run_case

from tdxedu.tdx import status as st
from tdxedu.tdx.pamt import KEYID_SHIFT, PageType
from tdxedu.tdx.sept import SeptState
from tdxedu.tdx.td import KotState, Lifecycle

RCX = st.TDX_OPERAND_ID_RCX
OK = st.TDX_SUCCESS
SEPT_BUSY = st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT
ESI = st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX
LSI = st.TDX_LIFECYCLE_STATE_INCORRECT


def _aug_accept(w, gpa=FREE_GPA):
    w.b.aug(w.td, gpa)
    w.enter()
    assert w.m.tdg_mem_page_accept(w.vp, gpa, lp=w.vp_lp).status == OK
    w.exit()


def _remove_runtime(w, gpa=0):
    w.block_track(gpa)
    return w.m.tdh_mem_page_remove(w.tdr, gpa, 0)


RUNTIME = [
    C("M15 VP.ENTER success", "finalized", lambda w: w.m.tdh_vp_enter(w.vp, lp=w.vp_lp), OK),
    C("M15 VP.ENTER before finalize (op-state)", "initialized",
      lambda w: w.m.tdh_vp_enter(w.vp, lp=w.vp_lp), st.TDX_OP_STATE_INCORRECT),
    C("M15 VP.ENTER on another LP than the associated one", "finalized",
      lambda w: w.m.tdh_vp_enter(w.vp, lp=w.other_lp(w.vp_lp)), st.TDX_VCPU_ASSOCIATED),
    C("M:tdh_vp_enter.c VP.ENTER on a vCPU never VP.INITed", "initialized",
      lambda w: w.m.tdh_vp_enter(_uninit(w)), st.TDX_VCPU_STATE_INCORRECT),
    C("M15 VP.ENTER on a non-TDVPR page", "finalized",
      lambda w: w.m.tdh_vp_enter(w.tdr), st.TDX_PAGE_METADATA_INCORRECT | RCX),
    C("M15 td_exit success", "finalized", lambda w: (w.enter(), w.exit())[1], OK),
    C("M15 RANGE.BLOCK success", "finalized",
      lambda w: w.m.tdh_mem_range_block(w.tdr, 0, 0), OK),
    C("M15 RANGE.BLOCK already blocked (non-error)", "finalized",
      lambda w: (w.m.tdh_mem_range_block(w.tdr, 0, 0), w.m.tdh_mem_range_block(w.tdr, 0, 0))[1],
      st.TDX_GPA_RANGE_ALREADY_BLOCKED | RCX),
    C("M15 RANGE.BLOCK a FREE entry", "finalized",
      lambda w: w.m.tdh_mem_range_block(w.tdr, FREE_GPA, 0), ESI),
    C("M15 RANGE.BLOCK walk fails", "finalized",
      lambda w: w.m.tdh_mem_range_block(w.tdr, NO_TABLE_GPA, 0), st.TDX_EPT_WALK_FAILED | RCX),
    C("M15 RANGE.BLOCK a PENDING entry", "finalized",
      lambda w: (w.b.aug(w.td, FREE_GPA), w.m.tdh_mem_range_block(w.tdr, FREE_GPA, 0))[1], OK),
    C("M15 RANGE.BLOCK keys not configured (TD_BLOCKED)", "finalized",
      lambda w: (w.to_blocked(), w.m.tdh_mem_range_block(w.tdr, 0, 0))[1],
      st.TDX_TD_KEYS_NOT_CONFIGURED),
    C("M15 RANGE.UNBLOCK success once tracked", "finalized",
      lambda w: (w.block_track(0), w.m.tdh_mem_range_unblock(w.tdr, 0, 0))[1], OK),
    C("M15 RANGE.UNBLOCK not tracked", "finalized",
      lambda w: (w.m.tdh_mem_range_block(w.tdr, 0, 0), w.m.tdh_mem_range_unblock(w.tdr, 0, 0))[1],
      st.TDX_TLB_TRACKING_NOT_DONE | st.TDX_OPERAND_ID_SEPT),
    C("M15 RANGE.UNBLOCK not blocked", "finalized",
      lambda w: w.m.tdh_mem_range_unblock(w.tdr, 0, 0), ESI),
    C("M15 MEM.TRACK success", "finalized", lambda w: w.m.tdh_mem_track(w.tdr), OK),
    C("M15 MEM.TRACK previous epoch busy", "finalized",
      lambda w: (w.enter(), w.m.tdh_mem_track(w.tdr), w.m.tdh_mem_track(w.tdr))[2],
      st.TDX_PREVIOUS_TLB_EPOCH_BUSY),
    C("M15 PAGE.REMOVE runtime success (BLOCK, TRACK)", "finalized", _remove_runtime, OK),
    C("M15 PAGE.REMOVE an unblocked entry", "finalized",
      lambda w: w.m.tdh_mem_page_remove(w.tdr, 0, 0), st.TDX_GPA_RANGE_NOT_BLOCKED | RCX),
    C("M15 PAGE.REMOVE after BLOCK without TRACK", "finalized",
      lambda w: (w.m.tdh_mem_range_block(w.tdr, 0, 0), w.m.tdh_mem_page_remove(w.tdr, 0, 0))[1],
      st.TDX_TLB_TRACKING_NOT_DONE | RCX),
    C("M15 PAGE.REMOVE: a vCPU that entered in the block epoch has not exited", "finalized",
      lambda w: (w.enter(), _remove_runtime(w))[1], st.TDX_TLB_TRACKING_NOT_DONE | RCX),
    C("M15 PAGE.REMOVE: vCPU exits after TRACK", "finalized",
      lambda w: (w.enter(), _remove_runtime(w), w.exit(), w.m.tdh_mem_page_remove(w.tdr, 0, 0))[3],
      OK),
    C("M15 PAGE.REMOVE before finalize needs no BLOCK/TRACK", "initialized",
      lambda w: w.m.tdh_mem_page_remove(w.tdr, 0, 0), OK),
    C("M15 PAGE.REMOVE a FREE entry", "finalized",
      lambda w: w.m.tdh_mem_page_remove(w.tdr, FREE_GPA, 0), ESI),
    C("M:tdh_mem_page_remove.c PAGE.REMOVE a non-leaf (level 1)", "finalized",
      lambda w: w.m.tdh_mem_page_remove(w.tdr, 0, 1), ESI),
    C("M15 PAGE.REMOVE walk fails", "finalized",
      lambda w: w.m.tdh_mem_page_remove(w.tdr, NO_TABLE_GPA, 0), st.TDX_EPT_WALK_FAILED | RCX),
    C("M15 SEPT.REMOVE a table with children", "initialized",
      lambda w: w.m.tdh_mem_sept_remove(w.tdr, 0, 1), st.TDX_EPT_PAGE_NOT_FREE | RCX),
    C("M15 SEPT.REMOVE an empty table before finalize", "initialized",
      lambda w: (w.m.tdh_mem_page_remove(w.tdr, 0, 0), w.m.tdh_mem_sept_remove(w.tdr, 0, 1))[1],
      OK),
    C("M15 SEPT.REMOVE unblocked table at runtime", "finalized",
      lambda w: w.m.tdh_mem_sept_remove(w.tdr, 0, 1), st.TDX_GPA_RANGE_NOT_BLOCKED | RCX),
    C("M15 SEPT.REMOVE a FREE level-1 entry", "initialized",
      lambda w: w.m.tdh_mem_sept_remove(w.tdr, 0x20_0000, 1), ESI),
    C("M15 ACCEPT success (PENDING -> MAPPED)", "finalized",
      lambda w: (w.b.aug(w.td, FREE_GPA), w.enter(),
                 w.m.tdg_mem_page_accept(w.vp, FREE_GPA, lp=w.vp_lp))[2], OK),
    C("M15 ACCEPT already accepted (non-error, operand = level)", "finalized",
      lambda w: (w.enter(), w.m.tdg_mem_page_accept(w.vp, 0, lp=w.vp_lp))[1],
      st.TDX_PAGE_ALREADY_ACCEPTED | 0),
    C("M15 ACCEPT 2M on a 4K-mapped range: size mismatch", "finalized",
      lambda w: (w.enter(), w.m.tdg_mem_page_accept(w.vp, 0, 1, lp=w.vp_lp))[1],
      st.TDX_PAGE_SIZE_MISMATCH | 1),
    C("M15 ACCEPT unmapped GPA: EPT-violation exit, no error", "finalized",
      lambda w: (w.enter(), w.m.tdg_mem_page_accept(w.vp, FREE_GPA, lp=w.vp_lp))[1], OK),
    C("M15 ACCEPT unaligned GPA", "finalized",
      lambda w: (w.enter(), w.m.tdg_mem_page_accept(w.vp, FREE_GPA + 8, lp=w.vp_lp))[1],
      st.TDX_OPERAND_INVALID | RCX),
]


def _uninit(w):
    vp = w.b.add_vcpu(w.td, init=False)
    w.b.finalize(w.td)
    return vp


@pytest.mark.parametrize("stage,kw,action,expect", RUNTIME)
def test_runtime_leaves(td_at, stage, kw, action, expect):
    run_case(td_at, stage, kw, action, expect)


TEARDOWN = [
    C("M15 VP.FLUSH success on the associated LP", "finalized",
      lambda w: w.m.tdh_vp_flush(w.vp, lp=w.vp_lp), OK),
    C("M15 VP.FLUSH on another LP", "finalized",
      lambda w: w.m.tdh_vp_flush(w.vp, lp=w.other_lp(w.vp_lp)), st.TDX_VCPU_NOT_ASSOCIATED),
    C("M15 VP.FLUSH twice", "finalized",
      lambda w: (w.m.tdh_vp_flush(w.vp, lp=w.vp_lp), w.m.tdh_vp_flush(w.vp, lp=w.vp_lp))[1],
      st.TDX_VCPU_NOT_ASSOCIATED),
    C("M15 VP.FLUSH after VPFLUSHDONE (TD_BLOCKED)", "finalized",
      lambda w: (w.to_blocked(), w.m.tdh_vp_flush(w.vp, lp=w.vp_lp))[1],
      st.TDX_TD_KEYS_NOT_CONFIGURED),
    C("M:tdh_vp_flush.c VP.FLUSH with TDCX pages missing", "initialized",
      lambda w: w.m.tdh_vp_flush(_created_vp(w)), st.TDX_TDCX_NUM_INCORRECT, pages=0),
    C("M15 VP.FLUSH while the vCPU is in guest: TDVPR busy", "finalized",
      lambda w: (w.enter(), w.m.tdh_vp_flush(w.vp, lp=w.vp_lp))[1], st.TDX_OPERAND_BUSY | RCX),
    C("M15 VPFLUSHDONE success", "finalized",
      lambda w: (w.flush_all(), w.m.tdh_mng_vpflushdone(w.tdr))[1], OK),
    C("M15 VPFLUSHDONE with an associated vCPU", "finalized",
      lambda w: w.m.tdh_mng_vpflushdone(w.tdr), st.TDX_FLUSHVP_NOT_DONE),
    C("M15 VPFLUSHDONE twice", "finalized",
      lambda w: (w.to_blocked(), w.m.tdh_mng_vpflushdone(w.tdr))[1],
      st.TDX_LIFECYCLE_STATE_INCORRECT),
    C("M15 VPFLUSHDONE in TD_HKID_ASSIGNED (creation error path)", "created",
      lambda w: w.m.tdh_mng_vpflushdone(w.tdr), OK),
    C("M15 VPFLUSHDONE while a vCPU is in guest: TDR busy", "finalized",
      lambda w: (w.enter(), w.m.tdh_mng_vpflushdone(w.tdr))[1], st.TDX_OPERAND_BUSY | RCX),
    C("M15 CACHE.WB success", "finalized",
      lambda w: (w.to_blocked(), w.m.tdh_phymem_cache_wb(0, lp=0))[1], OK),
    C("M15 CACHE.WB with no HKID flushed", "finalized",
      lambda w: w.m.tdh_phymem_cache_wb(0), st.TDX_NO_HKID_READY_TO_WBCACHE),
    C("M15 CACHE.WB resume with no saved state", "finalized",
      lambda w: (w.to_blocked(), w.m.tdh_phymem_cache_wb(1))[1], st.TDX_WBCACHE_RESUME_ERROR),
    C("M:tdh_phymem_cache_wb.c CACHE.WB bad command", "finalized",
      lambda w: w.m.tdh_phymem_cache_wb(2), st.TDX_OPERAND_INVALID | RCX),
    C("M15 KEY.FREEID success", "finalized",
      lambda w: (w.to_blocked(), w.cache_wb_all(), w.m.tdh_mng_key_freeid(w.tdr))[2], OK),
    C("M15 KEY.FREEID before VPFLUSHDONE", "finalized",
      lambda w: (w.flush_all(), w.m.tdh_mng_key_freeid(w.tdr))[1], LSI),
    C("M15 KEY.FREEID before CACHE.WB", "finalized",
      lambda w: (w.to_blocked(), w.m.tdh_mng_key_freeid(w.tdr))[1], st.TDX_WBCACHE_NOT_COMPLETE),
    C("M15 KEY.FREEID after CACHE.WB on one package of two", "finalized",
      lambda w: (w.to_blocked(), w.m.tdh_phymem_cache_wb(0, lp=0),
                 w.m.tdh_mng_key_freeid(w.tdr))[2], st.TDX_WBCACHE_NOT_COMPLETE),
    C("M15 PAGE.RECLAIM success (TDCS page)", "finalized",
      lambda w: (w.to_teardown(), w.m.tdh_phymem_page_reclaim(w.td.tdcs[0]))[1], OK),
    C("M15 PAGE.RECLAIM before KEY.FREEID", "finalized",
      lambda w: (w.to_blocked(), w.cache_wb_all(), w.m.tdh_phymem_page_reclaim(w.td.tdcs[0]))[2],
      st.TDX_LIFECYCLE_STATE_INCORRECT),
    C("M15 PAGE.RECLAIM of a running TD's page", "finalized",
      lambda w: w.m.tdh_phymem_page_reclaim(w.td.private[0]), st.TDX_LIFECYCLE_STATE_INCORRECT),
    C("M15 PAGE.RECLAIM the TDR with children", "finalized",
      lambda w: (w.to_teardown(), w.m.tdh_phymem_page_reclaim(w.tdr))[1],
      st.TDX_TD_ASSOCIATED_PAGES_EXIST),
    C("M15 PAGE.RECLAIM an NDA page", "finalized",
      lambda w: w.m.tdh_phymem_page_reclaim(w.b.page()), st.TDX_PAGE_METADATA_INCORRECT | RCX),
    C("M15 PAGE.RECLAIM unaligned", "finalized",
      lambda w: w.m.tdh_phymem_page_reclaim(w.tdr + 0x10), st.TDX_OPERAND_INVALID | RCX),
    C("M15 PAGE.RECLAIM with KeyID bits", "finalized",
      lambda w: w.m.tdh_phymem_page_reclaim(w.tdr | 33 << KEYID_SHIFT),
      st.TDX_OPERAND_INVALID | RCX),
    C("M:tdh_phymem_page_reclaim.c PAGE.RECLAIM outside any TDMR", "finalized",
      lambda w: w.m.tdh_phymem_page_reclaim(OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX),
    C("M15 PAGE.WBINVD an NDA page", "finalized",
      lambda w: w.m.tdh_phymem_page_wbinvd_hkid(w.td.hkid, w.b.page()), OK),
    C("M15 PAGE.WBINVD a page still assigned", "finalized",
      lambda w: w.m.tdh_phymem_page_wbinvd_hkid(w.td.hkid, w.td.private[0]),
      st.TDX_PAGE_METADATA_INCORRECT | RCX),
    C("M:tdh_phymem_page_wbinvd.c PAGE.WBINVD unaligned", "finalized",
      lambda w: w.m.tdh_phymem_page_wbinvd(w.b.page() + 64), st.TDX_OPERAND_INVALID | RCX),
]


def _created_vp(w):
    vp = w.b.page()
    assert w.m.tdh_vp_create(w.tdr, vp).status == OK
    return vp


@pytest.mark.parametrize("stage,kw,action,expect", TEARDOWN)
def test_teardown_leaves(td_at, stage, kw, action, expect):
    run_case(td_at, stage, kw, action, expect)


# --- effects and multi-step scenarios ---------------------------------------------------------
def test_block_records_bepoch_and_track_advances_epoch(td_at):
    """[M15]: BLOCK writes the TD epoch into the page's PAMT BEPOCH; TRACK increments it."""
    w = td_at("finalized")
    tdcs = w.m.td(w.tdr).tdcs
    e0 = tdcs.td_epoch
    assert w.m.tdh_mem_track(w.tdr).status == OK
    assert tdcs.td_epoch == e0 + 1
    assert w.m.tdh_mem_range_block(w.tdr, 0, 0).status == OK
    assert w.m.pamt.entries[w.td.private[0] >> 12].bepoch == e0 + 1
    assert tdcs.sept.walk(0, 0).state == SeptState.BLOCKED


def test_cache_wb_interrupted_resumable():
    """[M15] / M:tdh_phymem_cache_wb.c: an unfinished write-back returns
    TDX_INTERRUPTED_RESUMABLE; KVM resumes with RCX=1 until it succeeds ([K616]
    tdx_mmu_release_hkid)."""
    from tdxedu.tdx.testing import TdBuilder

    m = new_module(cache_wb_rounds=3)
    b = TdBuilder(m)
    w = World(m, b, b.build("finalized"))
    w.to_blocked()
    seen = [m.tdh_phymem_cache_wb(0, lp=0).status]
    while seen[-1] == st.TDX_INTERRUPTED_RESUMABLE:
        seen.append(m.tdh_phymem_cache_wb(1, lp=0).status)
    assert seen == [st.TDX_INTERRUPTED_RESUMABLE] * 2 + [OK]
    # the package's bit is cleared only on completion; package 1 still owes a write-back
    assert m.tdh_mng_key_freeid(w.tdr).status == st.TDX_WBCACHE_NOT_COMPLETE
    assert m.tdh_phymem_cache_wb(1, lp=2).status == st.TDX_WBCACHE_RESUME_ERROR
    # a fresh START on package 0 drops nothing owed: HKID is still FLUSHED, so it runs again
    assert m.tdh_phymem_cache_wb(0, lp=0).status == st.TDX_INTERRUPTED_RESUMABLE


def test_cache_wb_package_mutex_busy(td_at):
    """[M15]: CACHE.WB takes a package-scope mutex; a second LP of the same package gets
    BUSY | WBCACHE, an LP of the other package does not."""
    w = td_at("finalized")
    w.to_blocked()
    g = w.m.stepwise("tdh_phymem_cache_wb", 0, lp=0)
    next(g)
    assert w.m.tdh_phymem_cache_wb(0, lp=1).status == st.TDX_OPERAND_BUSY | 0xBC
    assert w.m.tdh_phymem_cache_wb(0, lp=2).status == OK
    assert finish(g).status == OK


def test_freeid_frees_hkid_for_reuse(td_at):
    """[M15]: KEY.FREEID moves the TD to TD_TEARDOWN and the KOT entry to HKID_FREE."""
    w = td_at("finalized")
    w.to_teardown()
    assert w.m.td(w.tdr).lifecycle == Lifecycle.TD_TEARDOWN
    assert w.m.kot[w.td.hkid] == KotState.HKID_FREE
    assert w.m.tdh_mng_create(w.b.page(), w.td.hkid).status == OK


def test_reclaim_outputs(td_at):
    """[M15]: RECLAIM outputs RCX = page type, RDX = owner, R8 = size; the TDR last."""
    w = td_at("finalized", pages=0)
    w.to_teardown()
    res = w.m.tdh_phymem_page_reclaim(w.td.tdcs[0])
    assert (res.rcx, res.rdx, res.r8) == (PageType.PT_TDCX, w.tdr, 0)
    m = w.m
    for e in list(m.pamt.in_use()):
        if e.pt != PageType.PT_TDR:
            assert m.tdh_phymem_page_reclaim(e.pfn << 12).status == OK
    res = m.tdh_phymem_page_reclaim(w.tdr)
    assert res.status == OK and res.rcx == PageType.PT_TDR
    assert m.tdh_phymem_page_wbinvd_tdr(w.tdr).status == OK
    assert not m.pamt.in_use() and not m.check_invariants()


def test_block_busy_during_zero_step_entry(td_at):
    """[M15]: after STEPPING_EPF_THRESHOLD (6) EPT violations at one RIP, the next VP.ENTER
    takes the S-EPT tree exclusively for its 0-step check; RANGE.BLOCK then gets
    TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT (and TRACK gets BUSY | TD_EPOCH)."""
    w = td_at("finalized")
    for _ in range(6):
        w.enter()
        assert w.exit(reason="EPT_VIOLATION", gpa=FREE_GPA, progressed=False).status == OK
    g = w.m.stepwise("tdh_vp_enter", w.vp, lp=w.vp_lp)
    step = next(g)
    assert "0-step" in step.label
    res = w.m.tdh_mem_range_block(w.tdr, 0, 0, lp=2)
    assert res.status == SEPT_BUSY and str(res.status) == "TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT"
    assert w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, w.b.page(), lp=2).status == SEPT_BUSY
    assert w.m.tdh_mem_track(w.tdr, lp=2).status == st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TD_EPOCH
    res = finish(g)
    # the listed GPA is still unmapped: a synthesised EPT-violation exit, the guest not entered
    assert res.status == OK and res.exit_reason == "EPT_VIOLATION"
    assert w.m.tdh_mem_range_block(w.tdr, 0, 0, lp=2).status == OK
    assert not w.m.check_invariants()


def test_guest_accept_vs_host_block_priority(td_at):
    """[M15]: a guest ACCEPT holding the entry lock makes host BLOCK fail with BUSY | RCX and
    sets TDHP; the guest's next try gets BUSY_HOST_PRIORITY until the host wins."""
    w = td_at("finalized")
    w.b.aug(w.td, FREE_GPA)
    w.enter()
    g = w.m.stepwise("tdg_mem_page_accept", w.vp, FREE_GPA, 0, lp=w.vp_lp)
    next(g)  # zeroing the page with the entry guest-locked
    assert w.m.tdh_mem_range_block(w.tdr, FREE_GPA, 0, lp=2).status == st.TDX_OPERAND_BUSY | RCX
    assert finish(g).status == OK
    res = w.m.tdg_mem_page_accept(w.vp, FREE_GPA, lp=w.vp_lp)
    assert res.status == st.TDX_OPERAND_BUSY_HOST_PRIORITY | RCX
    assert w.m.tdh_mem_range_block(w.tdr, FREE_GPA, 0, lp=2).status == OK  # host wins, TDHP off
    res = w.m.tdg_mem_page_accept(w.vp, FREE_GPA, lp=w.vp_lp)
    assert res.status == OK and res.exit_reason == "EPT_VIOLATION"  # blocked: exit to host


def test_guest_vs_guest_accept_busy(td_at):
    """[M15]: two guest-side acquirers: the second gets plain BUSY | RCX."""
    w = td_at("finalized", vcpus=2)
    w.b.aug(w.td, FREE_GPA)
    a, b = w.td.vcpus
    w.enter(a)
    w.enter(b)
    g = w.m.stepwise("tdg_mem_page_accept", a, FREE_GPA, 0, lp=w.td.vcpu_lp[a])
    next(g)
    res = w.m.tdg_mem_page_accept(b, FREE_GPA, lp=w.td.vcpu_lp[b])
    assert res.status == st.TDX_OPERAND_BUSY | RCX
    assert finish(g).status == OK
