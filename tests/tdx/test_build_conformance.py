"""Build, measurement and reclaim leaves against the TDX module 1.5 source (niooss-ledger/
tdx-module f99767b = 1.5.05; 1.5.01 = f9acbbf where it differs): each test names the module
file whose check it pins. Each failed on the model before the fix it covers."""

from __future__ import annotations

import pytest
from tdx_cases import FREE_GPA, KEYID, NO_TABLE_GPA, OK, R8, RCX, RDX, World, new_module

from tdxedu.tdx import Leaf, TdxModule
from tdxedu.tdx import status as st
from tdxedu.tdx.pamt import PageType
from tdxedu.tdx.sept import SUPPRESS_VE
from tdxedu.tdx.td import MAX_NUM_TDCS_PAGES, MAX_TDCX_PER_VCPU, MIN_NUM_TDCS_PAGES
from tdxedu.tdx.testing import TdBuilder

R9 = st.TDX_OPERAND_ID_R9
TDR = st.TDX_OPERAND_ID_TDR


def _hold(lock, exclusive=True):
    assert lock.try_exclusive("other") if exclusive else lock.try_shared("other")


# --- TDCS / TDCX page counts (td_control_structures.h, tdx_tdvps.h) ---------------------------
def test_tdcs_pages_range_6_to_9(td_at):
    """tdh_mng_add_cx.c: MIN_NUM_TDCS_PAGES (6) completes the TDCS, up to MAX_NUM_TDCS_PAGES (9)
    may be added before TDH.MNG.INIT, a 10th is TDCX_NUM_INCORRECT."""
    w = td_at("created")
    w.b.configure_keys(w.td)
    for i in range(MAX_NUM_TDCS_PAGES):
        if i == MIN_NUM_TDCS_PAGES - 1:
            assert w.m.tdh_mng_init(w.tdr).status == st.TDX_TDCS_NOT_ALLOCATED  # 5 pages
        assert w.m.tdh_mng_addcx(w.tdr, w.b.page()).status == OK
    assert w.m.tdh_mng_addcx(w.tdr, w.b.page()).status == st.TDX_TDCX_NUM_INCORRECT
    assert w.m.tdh_mng_init(w.tdr).status == OK
    assert w.m.td(w.tdr).chldcnt == MAX_NUM_TDCS_PAGES
    assert not w.m.check_invariants()


def test_addcx_after_init_page_checked_before_op_state(td_at):
    """tdh_mng_add_cx.c: the new page (RCX) is checked before OP_STATE is read (pages 7..9
    only): a used page after MNG.INIT is PAGE_METADATA_INCORRECT | RCX, a free one
    OP_STATE_INCORRECT."""
    w = td_at("initialized", vcpus=0, pages=0)
    assert w.m.tdh_mng_addcx(w.tdr, w.td.tdcs[0]).status == st.TDX_PAGE_METADATA_INCORRECT | RCX
    assert w.m.tdh_mng_addcx(w.tdr, w.b.page()).status == st.TDX_OP_STATE_INCORRECT


def test_tdcx_pages_range_5_to_14(td_at):
    """tdh_vp_addcx.c: the TDVPS grows to MAX_TDVPS_PAGES (15: TDVPR + 14 TDCX); helpers.c
    map_tdvps needs MIN_TDVPS_PAGES (6: TDVPR + 5) for TDH.VP.INIT and TDH.VP.FLUSH."""
    w = td_at("initialized", vcpus=0, pages=0)
    vp = w.b.page()
    assert w.m.tdh_vp_create(w.tdr, vp).status == OK
    for _ in range(4):
        assert w.m.tdh_vp_addcx(vp, w.b.page()).status == OK
    assert w.m.tdh_vp_init(vp, lp=1).status == st.TDX_TDCX_NUM_INCORRECT  # 4 TDCX
    for _ in range(MAX_TDCX_PER_VCPU - 4):
        assert w.m.tdh_vp_addcx(vp, w.b.page()).status == OK
    assert w.m.tdh_vp_addcx(vp, w.b.page()).status == st.TDX_TDCX_NUM_INCORRECT
    assert w.m.tdh_vp_init(vp, lp=1).status == OK
    assert w.m.tdh_vp_flush(vp, lp=1).status == OK
    assert not w.m.check_invariants()


def test_module_refuses_page_counts_outside_the_module_range():
    with pytest.raises(ValueError, match="6..9"):
        TdxModule(tdcs_pages=5)
    with pytest.raises(ValueError, match="5..14"):
        TdxModule(tdcx_per_vcpu=15)


# --- TDH.MR.EXTEND (tdh_mr_extend.c) ----------------------------------------------------------
def test_mr_extend_not_present_with_entry_details(td_at):
    """A walk that reaches no present leaf is EPT_WALK_FAILED turned into
    EPT_ENTRY_NOT_PRESENT | RCX, and RCX / RDX carry the entry where the walk stopped
    (set_arch_septe_details_in_vmm_regs: RDX = level | arch state << 8)."""
    w = td_at("initialized", vcpus=1, pages=1)
    res = w.m.tdh_mr_extend(w.tdr, NO_TABLE_GPA)  # the level-1 entry over 2 MiB is FREE
    assert res.status == st.TDX_EPT_ENTRY_NOT_PRESENT | RCX
    assert (res.rcx, res.rdx) == (SUPPRESS_VE, 1)
    res = w.m.tdh_mr_extend(w.tdr, FREE_GPA + 0x100)
    assert res.status == st.TDX_EPT_ENTRY_NOT_PRESENT | RCX and res.rdx == 0


def test_mr_extend_blocked_and_pending_pages_are_not_present(td_at):
    """Row [7] / [6] of op_state_lookup.c allow BLOCK and AUG before finalize: a BLOCKED or
    PENDING leaf has RWX = 0, so the walk to a leaf fails: NOT_PRESENT | RCX, RDX state 1 / 2."""
    w = td_at("initialized", vcpus=1, pages=1)
    assert w.m.tdh_mem_range_block(w.tdr, 0, 0).status == OK
    res = w.m.tdh_mr_extend(w.tdr, 0)
    assert res.status == st.TDX_EPT_ENTRY_NOT_PRESENT | RCX and res.rdx == 1 << 8
    assert w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, w.b.page()).status == OK
    res = w.m.tdh_mr_extend(w.tdr, FREE_GPA)
    assert res.status == st.TDX_EPT_ENTRY_NOT_PRESENT | RCX and res.rdx == 2 << 8


def test_mr_extend_alignment_before_gpa_validity_and_walk(td_at):
    w = td_at("initialized", vcpus=1, pages=1)
    assert w.m.tdh_mr_extend(w.tdr, NO_TABLE_GPA + 0x80).status == st.TDX_OPERAND_INVALID | RCX
    assert w.m.tdh_mr_extend(w.tdr, 0x80).status == st.TDX_OPERAND_INVALID | RCX
    assert w.m.tdh_mr_extend(w.tdr, 0xF00).status == OK


# --- TDH.MR.FINALIZE (tdh_mr_finalize.c) ------------------------------------------------------
def test_mr_finalize_needs_an_initialised_vcpu(td_at):
    """TDCS.NUM_VCPUS == 0 -> TDX_NO_VCPUS; NUM_VCPUS counts TDH.VP.INIT, not VP.CREATE."""
    w = td_at("initialized", vcpus=0, pages=1)
    assert w.m.tdh_mr_finalize(w.tdr).status == st.TDX_NO_VCPUS
    vp = w.b.add_vcpu(w.td, init=False)
    assert w.m.tdh_mr_finalize(w.tdr).status == st.TDX_NO_VCPUS
    assert w.m.tdh_vp_init(vp, lp=1).status == OK
    assert w.m.tdh_mr_finalize(w.tdr).status == OK


# --- TDH.MEM.PAGE.ADD (tdh_mem_page_add.c) ----------------------------------------------------
@pytest.mark.parametrize("source,expect", [
    pytest.param(0x5000, OK, id="shared page"),
    pytest.param(0x5000 | 5 << 46, OK, id="shared KeyID 5"),
    pytest.param(0x5008, st.TDX_OPERAND_INVALID | R9, id="unaligned"),
    pytest.param(0x5000 | KEYID, st.TDX_OPERAND_INVALID | R9, id="private KeyID"),
    pytest.param(1 << 52, st.TDX_OPERAND_INVALID | R9, id="above MAX_PA"),
])
def test_page_add_source_is_a_shared_page(td_at, source, expect):
    """shared_hpa_check_with_pwr_2_alignment(source, 4K) -> OPERAND_INVALID | R9; the source
    need not be in a TDMR."""
    w = td_at("initialized", vcpus=1, pages=1)
    assert w.m.tdh_mem_page_add(w.tdr, FREE_GPA, w.b.page(), source).status == expect


def test_page_add_source_checked_after_entry_before_page(td_at):
    w = td_at("initialized", vcpus=1, pages=1)
    bad_source = 0x5000 | KEYID
    assert w.m.tdh_mem_page_add(w.tdr, 0, w.b.page(), bad_source).status == \
        st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX  # GPA 0 is mapped already
    assert w.m.tdh_mem_page_add(w.tdr, FREE_GPA, w.tdr, bad_source).status == \
        st.TDX_OPERAND_INVALID | R9  # the TDR as new page would be R8


def test_page_add_failures_report_the_entry(td_at):
    """EPT_WALK_FAILED and EPT_ENTRY_STATE_INCORRECT come with the entry's details."""
    w = td_at("initialized", vcpus=1, pages=1)
    res = w.m.tdh_mem_page_add(w.tdr, NO_TABLE_GPA, w.b.page())
    assert res.status == st.TDX_EPT_WALK_FAILED | RCX and (res.rcx, res.rdx) == (SUPPRESS_VE, 1)
    res = w.m.tdh_mem_page_add(w.tdr, 0, w.b.page())
    assert res.status == st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX
    assert res.rdx == 4 << 8 and res.rcx & 0xF_FFFF_FFFF_F000 == w.td.private[0]  # MAPPED, its HPA


# --- TDH.MNG.INIT's TD_PARAMS operand (tdh_mng_init.c) -----------------------------------------
@pytest.mark.parametrize("td_params,expect", [
    (0x8000, OK), (0x8400, OK), (0x8200, st.TDX_OPERAND_INVALID | RDX),
    (0x8000 | KEYID, st.TDX_OPERAND_INVALID | RDX),
])
def test_mng_init_td_params_shared_and_1k_aligned(td_at, td_params, expect):
    w = td_at("keys_configured")
    assert w.m.tdh_mng_init(w.tdr, td_params).status == expect


# --- TDH.VP.INIT version 1 (1.5.05 tdh_vp_init.c) ----------------------------------------------
def test_vp_init_x2apic_id_unique_and_32_bit(td_at):
    w = td_at("initialized", vcpus=1, pages=0)  # vCPU 0 has x2APIC id 0
    vp = w.b.add_vcpu(w.td, init=False)
    assert w.m.tdh_vp_init(vp, 0, 1 << 32, lp=1).status == st.TDX_OPERAND_INVALID | R8
    res = w.m.tdh_vp_init(vp, 0, 0, lp=1)
    assert res.status == st.TDX_X2APIC_ID_NOT_UNIQUE and res.status.operand_id == 0
    assert w.m.tdh_vp_init(vp, 0, 7, lp=1).status == OK


def test_vp_init_version_1_locks_the_tdr_exclusively(td_at):
    """1.5.05: lock_and_map_implicit_tdr is exclusive for version > 0 (BUSY | TDR), shared for
    version 0, which the register-level SEAMCALL can still issue."""
    w = td_at("initialized", vcpus=1, pages=0)
    vp = w.b.add_vcpu(w.td, init=False)
    _hold(w.m.pamt.entry(w.tdr >> 12).lock, exclusive=False)
    assert w.m.tdh_vp_init(vp, 0, 5, lp=1).status == st.TDX_OPERAND_BUSY | TDR
    assert w.m.seamcall(Leaf.TDH_VP_INIT, vp, 0, 5, lp=1).status == OK  # version 0


# --- the PAMT_2M entry of a 4K operand (pamt_manager.c pamt_walk) -------------------------------
def _with_2m_page(**kw):
    m = new_module(**kw)
    b = TdBuilder(m)
    td = b.build("initialized")  # AUG may run before TDH.MR.FINALIZE (op-state row [6])
    big = 8 << 20  # a free 2 MiB-aligned range of the 64 MiB TDMR
    b.map_tables(td, 4 << 20, down_to=2)
    assert m.tdh_mem_page_aug(td.tdr, 4 << 20, 1, big).status == OK
    return m, b, td, big


@pytest.mark.parametrize("call,op", [
    pytest.param(lambda m, td, pa, b: m.tdh_mem_sept_add(td.tdr, 0x4000_0000, 2, pa), R8,
                 id="tdh_mem_sept_add.c"),
    pytest.param(lambda m, td, pa, b: m.tdh_vp_create(td.tdr, pa), RCX, id="tdh_vp_create.c"),
    pytest.param(lambda m, td, pa, b: m.tdh_mng_create(pa, 40), RCX, id="tdh_mng_create.c"),
    pytest.param(lambda m, td, pa, b: m.tdh_phymem_page_wbinvd_hkid(33, pa), RCX,
                 id="tdh_phymem_page_wbinvd.c"),
    pytest.param(lambda m, td, pa, b: m.tdh_mem_track(pa), RCX, id="explicit TDR operand"),
])
def test_4k_page_inside_a_2m_page_is_refused(call, op):
    """pamt_walk(walk_to_leaf_size=4K) stops at a PAMT_2M leaf: the leaf size is not 4K, so
    non_shared_hpa_metadata_check_and_lock returns PAGE_METADATA_INCORRECT (the 4K PAMT entry
    itself still reads PT_NDA)."""
    m, b, td, big = _with_2m_page()
    pa = big + 0x3000
    assert m.pamt.page_type(pa) == PageType.PT_NDA
    assert call(m, td, pa, b).status == st.TDX_PAGE_METADATA_INCORRECT | op
    assert not m.check_invariants()


def test_2m_parent_lock_busy_and_promotion(td_at):
    """pamt_walk takes the PAMT_2M entry shared before the 4K entry (BUSY | operand when held
    exclusively); wanting a 4K page exclusively inside a 2 MB leaf promotes the 2M lock,
    which fails while another reader holds it (promote_sharex_lock_hp)."""
    m, b, td, big = _with_2m_page()
    r = m.pamt.ranges[big >> 21]
    _hold(r.lock, exclusive=False)
    assert m.tdh_vp_create(td.tdr, big + 0x1000).status == st.TDX_OPERAND_BUSY | RCX
    assert m.tdh_phymem_page_wbinvd_hkid(33, big).status == \
        st.TDX_PAGE_METADATA_INCORRECT | RCX  # shared: no promotion needed
    r.lock.release_shared("other")
    _hold(r.lock)
    assert m.tdh_phymem_page_wbinvd_hkid(33, big).status == st.TDX_OPERAND_BUSY | RCX


# --- TDH.PHYMEM.PAGE.RECLAIM outputs (tdh_phymem_page_reclaim.c) ------------------------------
def test_reclaim_outputs_on_failure(td_at):
    """RCX = page type, RDX = owner, R8 = level are written as soon as the PAMT entry is found
    and kept on every later failure; KVM prints them (pr_tdx_error_3 in `__tdx_reclaim_page`)."""
    w = td_at("finalized")
    res = w.m.tdh_phymem_page_reclaim(w.td.private[0])
    assert res.status == st.TDX_LIFECYCLE_STATE_INCORRECT
    assert (res.rcx, res.rdx, res.r8) == (PageType.PT_REG, w.tdr, 0)
    res = w.m.tdh_phymem_page_reclaim(w.b.page())  # PT_NDA: before the outputs are set
    assert res.status == st.TDX_PAGE_METADATA_INCORRECT | RCX and (res.rcx, res.rdx) == (0, 0)
    w.to_teardown()
    res = w.m.tdh_phymem_page_reclaim(w.tdr)
    assert res.status == st.TDX_TD_ASSOCIATED_PAGES_EXIST
    assert (res.rcx, res.rdx, res.r8) == (PageType.PT_TDR, 0, 0)
    _hold(w.m.pamt.entry(w.tdr >> 12).lock)
    res = w.m.tdh_phymem_page_reclaim(w.td.tdcs[0])
    assert res.status == st.TDX_OPERAND_BUSY | TDR
    assert (res.rcx, res.rdx) == (PageType.PT_TDCX, w.tdr)


def test_reclaim_2m_page():
    """The walk is not to a fixed size: a 2 MB page is reclaimed whole by its 2 MB-aligned PA
    (R8 = 1, child count - 512); any other PA inside it is OPERAND_INVALID | RCX, outputs set."""
    m, b, td, big = _with_2m_page()
    kids = m.td(td.tdr).chldcnt
    w = World(m, b, td)
    w.to_teardown()
    res = m.tdh_phymem_page_reclaim(big + 0x1000)
    assert res.status == st.TDX_OPERAND_INVALID | RCX
    assert (res.rcx, res.rdx, res.r8) == (PageType.PT_REG, td.tdr, 1)
    res = m.tdh_phymem_page_reclaim(big)
    assert res.status == OK and res.r8 == 1
    assert m.td(td.tdr).chldcnt == kids - 512
    assert m.pamt.range_pt(big) == PageType.PT_NDA
    assert not m.check_invariants()


# --- TDH.PHYMEM.PAGE.WBINVD (tdh_phymem_page_wbinvd.c) ----------------------------------------
def test_wbinvd_locks_the_page_shared(td_at):
    """check_and_lock_explicit_4k_private_hpa(TDX_LOCK_SHARED, PT_NDA): BUSY | RCX while
    another SEAMCALL holds the page exclusively; a shared holder does not stop it."""
    w = td_at("finalized")
    pa = w.b.page()
    lock = w.m.pamt.entry(pa >> 12).lock
    _hold(lock)
    assert w.m.tdh_phymem_page_wbinvd_hkid(33, pa).status == st.TDX_OPERAND_BUSY | RCX
    lock.release_exclusive("other")
    _hold(lock, exclusive=False)
    assert w.m.tdh_phymem_page_wbinvd_hkid(33, pa).status == OK


def test_wbinvd_any_keyid_no_tdmr_page(td_at):
    w = td_at("finalized")
    assert w.m.tdh_phymem_page_wbinvd(0x4000_0000 | 7 << 46).status == \
        st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX
    assert w.m.tdh_phymem_page_wbinvd(w.b.page() | 63 << 46).status == OK


@pytest.mark.parametrize("value", [-4096, 1 << 64])
def test_wbinvd_value_that_is_no_register_is_invalid(td_at, value):
    """A Python int no 64-bit RCX can hold gets OPERAND_INVALID | RCX, not an exception."""
    w = td_at("finalized")
    assert w.m.tdh_phymem_page_wbinvd(value).status == st.TDX_OPERAND_INVALID | RCX
