"""Table-driven tests: every modelled leaf's success path and the errors the references list.

Each case id starts with its source: a bibliography tag ("M15" = TDX module 1.5.01, "K616";
`tdxedu sources M15`) or a TDX module 1.5 file ("M:tdh_mng_create.c").
A case is (stage the TD is built to, builder kwargs, action on the World, expected status).
"""

from __future__ import annotations

import pytest
from tdx_cases import (
    FREE_GPA,
    KEYID,
    NO_TABLE_GPA,
    OK,
    OUTSIDE,
    R8,
    RCX,
    RDX,
    C,
    finish,
    run_case,
)

from tdxedu.tdx import status as st
from tdxedu.tdx.pamt import PageType
from tdxedu.tdx.sept import SHARED_BIT, SeptState
from tdxedu.tdx.td import KotState, Lifecycle, OpState


# --- build leaves -------------------------------------------------------------------------
def _create(w, tdr=None, hkid=None):
    return w.m.tdh_mng_create(w.b.page() if tdr is None else tdr, 34 if hkid is None else hkid)


BUILD = [
    C("M15 MNG.CREATE success", "created", lambda w: _create(w), OK),
    C("M:tdh_mng_create.c HKID not private (global KeyID)", "created",
      lambda w: _create(w, hkid=w.m.global_keyid), st.TDX_OPERAND_INVALID | RDX),
    C("M:tdh_mng_create.c HKID out of range", "created",
      lambda w: _create(w, hkid=4096), st.TDX_OPERAND_INVALID | RDX),
    C("M:tdh_mng_create.c HKID checked before TDR", "created",
      lambda w: _create(w, tdr=0x1234, hkid=4096), st.TDX_OPERAND_INVALID | RDX),
    C("M:helpers.c TDR unaligned", "created",
      lambda w: _create(w, tdr=w.b.page() + 8), st.TDX_OPERAND_INVALID | RCX),
    C("M:helpers.c TDR with KeyID bits", "created",
      lambda w: _create(w, tdr=w.b.page() | KEYID), st.TDX_OPERAND_INVALID | RCX),
    C("M:helpers.c TDR outside TDMR", "created",
      lambda w: _create(w, tdr=OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX),
    C("M:tdh_mng_create.c TDR page not NDA", "created",
      lambda w: _create(w, tdr=w.tdr), st.TDX_PAGE_METADATA_INCORRECT | RCX),
    C("M15 MNG.CREATE HKID not free", "created",
      lambda w: _create(w, hkid=w.td.hkid), st.TDX_HKID_NOT_FREE),
    C("M15 KEY.CONFIG success (one package)", "created",
      lambda w: w.m.tdh_mng_key_config(w.tdr, lp=0), OK),
    C("M15 KEY.CONFIG twice on a package", "created",
      lambda w: (w.m.tdh_mng_key_config(w.tdr, lp=0), w.m.tdh_mng_key_config(w.tdr, lp=1))[1],
      st.TDX_KEY_CONFIGURED),
    C("M15 KEY.CONFIG after TD_KEYS_CONFIGURED", "keys_configured",
      lambda w: w.m.tdh_mng_key_config(w.tdr, lp=0), st.TDX_LIFECYCLE_STATE_INCORRECT),
    C("M:helpers.c KEY.CONFIG on a non-TDR page", "keys_configured",
      lambda w: w.m.tdh_mng_key_config(w.td.tdcs[0]), st.TDX_PAGE_METADATA_INCORRECT | RCX),
    C("M:helpers.c KEY.CONFIG on an NDA page", "created",
      lambda w: w.m.tdh_mng_key_config(w.b.page()), st.TDX_PAGE_METADATA_INCORRECT | RCX),
    C("M15 MNG.ADDCX before keys configured", "created",
      lambda w: w.m.tdh_mng_addcx(w.tdr, w.b.page()), st.TDX_TD_KEYS_NOT_CONFIGURED),
    C("M:tdh_mng_add_cx.c ADDCX a 7th TDCS page before MNG.INIT", "keys_configured",
      lambda w: w.m.tdh_mng_addcx(w.tdr, w.b.page()), OK),
    C("M:tdh_mng_add_cx.c ADDCX beyond MAX_NUM_TDCS_PAGES (9)", "keys_configured",
      lambda w: [w.m.tdh_mng_addcx(w.tdr, w.b.page()) for _ in range(4)][-1],
      st.TDX_TDCX_NUM_INCORRECT),
    C("M:tdh_mng_add_cx.c ADDCX a 7th TDCS page after MNG.INIT (op-state)", "initialized",
      lambda w: w.m.tdh_mng_addcx(w.tdr, w.b.page()), st.TDX_OP_STATE_INCORRECT,
      vcpus=0, pages=0),
    C("M:tdh_mng_add_cx.c ADDCX page already assigned", "created",
      lambda w: (w.b.configure_keys(w.td), w.m.tdh_mng_addcx(w.tdr, w.b.create().tdr))[1],
      st.TDX_PAGE_METADATA_INCORRECT | RCX),
    C("M:tdh_mng_add_cx.c ADDCX TDR operand is RDX", "keys_configured",
      lambda w: w.m.tdh_mng_addcx(w.b.page(), w.b.page()), st.TDX_PAGE_METADATA_INCORRECT | RDX),
    C("M15 MNG.INIT success", "keys_configured", lambda w: w.m.tdh_mng_init(w.tdr), OK),
    C("M15 MNG.INIT before all TDCS pages", "created",
      lambda w: (w.b.configure_keys(w.td), w.m.tdh_mng_init(w.tdr))[1], st.TDX_TDCS_NOT_ALLOCATED),
    C("M15 MNG.INIT twice", "initialized",
      lambda w: w.m.tdh_mng_init(w.tdr), st.TDX_OP_STATE_INCORRECT, vcpus=0, pages=0),
    C("M15 MNG.INIT before keys configured", "created",
      lambda w: w.m.tdh_mng_init(w.tdr), st.TDX_TD_KEYS_NOT_CONFIGURED),
    C("M15 VP.CREATE success", "initialized",
      lambda w: w.m.tdh_vp_create(w.tdr, w.b.page()), OK, vcpus=0, pages=0),
    C("M15 VP.CREATE before keys configured", "created",
      lambda w: w.m.tdh_vp_create(w.tdr, w.b.page()), st.TDX_TD_KEYS_NOT_CONFIGURED),
    C("M15 VP.CREATE before MNG.INIT (op-state)", "keys_configured",
      lambda w: w.m.tdh_vp_create(w.tdr, w.b.page()), st.TDX_OP_STATE_INCORRECT),
    C("M:tdh_vp_create.c TDVPR page already assigned", "initialized",
      lambda w: w.m.tdh_vp_create(w.tdr, w.td.tdcs[0]), st.TDX_PAGE_METADATA_INCORRECT | RCX,
      vcpus=0, pages=0),
    C("M15 VP.ADDCX success", "initialized",
      lambda w: w.m.tdh_vp_addcx(_vp_partial(w), w.b.page()),
      OK, vcpus=0, pages=0),
    C("M:tdh_vp_addcx.c VP.ADDCX after VP.INIT", "initialized",
      lambda w: w.m.tdh_vp_addcx(w.vp, w.b.page()), st.TDX_VCPU_STATE_INCORRECT, pages=0),
    C("M:tdh_vp_addcx.c VP.ADDCX a 6th TDCX page", "initialized",
      lambda w: w.m.tdh_vp_addcx(w.b.add_vcpu(w.td, init=False), w.b.page()),
      OK, vcpus=0, pages=0),
    C("M:tdh_vp_addcx.c VP.ADDCX beyond MAX_TDVPS_PAGES (15)", "initialized",
      lambda w: _addcx_n(w, w.b.add_vcpu(w.td, init=False), 10),
      st.TDX_TDCX_NUM_INCORRECT, vcpus=0, pages=0),
    C("M:helpers.c VP.ADDCX on a non-TDVPR", "initialized",
      lambda w: w.m.tdh_vp_addcx(w.tdr, w.b.page()), st.TDX_PAGE_METADATA_INCORRECT | RDX,
      vcpus=0, pages=0),
    C("M15 VP.INIT success", "initialized",
      lambda w: w.m.tdh_vp_init(w.b.add_vcpu(w.td, init=False), lp=2), OK, vcpus=0, pages=0),
    C("M:tdh_vp_init.c VP.INIT twice", "initialized",
      lambda w: w.m.tdh_vp_init(w.vp, lp=w.vp_lp), st.TDX_VCPU_STATE_INCORRECT, pages=0),
    C("M:tdh_vp_init.c VP.INIT with TDCX missing", "initialized",
      lambda w: w.m.tdh_vp_init(_vp_partial(w)), st.TDX_TDCX_NUM_INCORRECT, vcpus=0, pages=0),
    C("M15 SEPT.ADD success", "initialized",
      lambda w: w.m.tdh_mem_sept_add(w.tdr, 0, 3, w.b.page()), OK, vcpus=0, pages=0),
    C("M15 SEPT.ADD entry not FREE", "initialized",
      lambda w: w.m.tdh_mem_sept_add(w.tdr, 0, 1, w.b.page()),
      st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX, vcpus=0),
    C("M15 SEPT.ADD walk fails (no parent table)", "initialized",
      lambda w: w.m.tdh_mem_sept_add(w.tdr, 0, 2, w.b.page()),
      st.TDX_EPT_WALK_FAILED | RCX, vcpus=0, pages=0),
    C("M:helpers.c SEPT.ADD level 0 is invalid", "initialized",
      lambda w: w.m.tdh_mem_sept_add(w.tdr, 0, 0, w.b.page()),
      st.TDX_OPERAND_INVALID | RCX, vcpus=0, pages=0),
    C("M:helpers.c SEPT.ADD shared GPA", "initialized",
      lambda w: w.m.tdh_mem_sept_add(w.tdr, SHARED_BIT, 3, w.b.page()),
      st.TDX_OPERAND_INVALID | RCX, vcpus=0, pages=0),
    C("M:tdh_mem_sept_add.c SEPT.ADD page in use (R8)", "initialized",
      lambda w: w.m.tdh_mem_sept_add(w.tdr, 0, 3, w.td.tdcs[0]),
      st.TDX_PAGE_METADATA_INCORRECT | R8, vcpus=0, pages=0),
    C("M15 SEPT.ADD keys not configured", "created",
      lambda w: w.m.tdh_mem_sept_add(w.tdr, 0, 3, w.b.page()), st.TDX_TD_KEYS_NOT_CONFIGURED),
    C("M15 PAGE.ADD success", "initialized",
      lambda w: (w.b.map_tables(w.td, 0), w.m.tdh_mem_page_add(w.tdr, 0, w.b.page()))[1],
      OK, vcpus=0, pages=0),
    C("M15 PAGE.ADD entry not FREE", "initialized",
      lambda w: w.m.tdh_mem_page_add(w.tdr, 0, w.b.page()),
      st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX, vcpus=0),
    C("M15 PAGE.ADD walk fails", "initialized",
      lambda w: w.m.tdh_mem_page_add(w.tdr, NO_TABLE_GPA, w.b.page()),
      st.TDX_EPT_WALK_FAILED | RCX, vcpus=0),
    C("M15 PAGE.ADD after finalize (op-state)", "finalized",
      lambda w: w.m.tdh_mem_page_add(w.tdr, FREE_GPA, w.b.page()), st.TDX_OP_STATE_INCORRECT),
    C("M:tdh_mem_page_add.c PAGE.ADD page in use (R8)", "initialized",
      lambda w: w.m.tdh_mem_page_add(w.tdr, FREE_GPA, w.td.tdcs[0]),
      st.TDX_PAGE_METADATA_INCORRECT | R8, vcpus=0),
    C("M:helpers.c PAGE.ADD unaligned GPA", "initialized",
      lambda w: w.m.tdh_mem_page_add(w.tdr, FREE_GPA + 8, w.b.page()),
      st.TDX_OPERAND_INVALID | RCX, vcpus=0),
    C("M15 MR.EXTEND success", "initialized",
      lambda w: w.m.tdh_mr_extend(w.tdr, 0x100), OK, vcpus=0),
    C("M15 MR.EXTEND not 256-aligned", "initialized",
      lambda w: w.m.tdh_mr_extend(w.tdr, 0x10), st.TDX_OPERAND_INVALID | RCX, vcpus=0),
    C("M:tdh_mr_extend.c MR.EXTEND FREE entry: not present", "initialized",
      lambda w: w.m.tdh_mr_extend(w.tdr, FREE_GPA), st.TDX_EPT_ENTRY_NOT_PRESENT | RCX,
      vcpus=0),
    C("M:tdh_mr_extend.c MR.EXTEND walk fails: not present", "initialized",
      lambda w: w.m.tdh_mr_extend(w.tdr, NO_TABLE_GPA), st.TDX_EPT_ENTRY_NOT_PRESENT | RCX,
      vcpus=0),
    C("M15 MR.EXTEND after finalize", "finalized",
      lambda w: w.m.tdh_mr_extend(w.tdr, 0), st.TDX_OP_STATE_INCORRECT),
    C("M15 MR.FINALIZE success", "initialized", lambda w: w.m.tdh_mr_finalize(w.tdr), OK),
    C("M15 MR.FINALIZE twice", "finalized",
      lambda w: w.m.tdh_mr_finalize(w.tdr), st.TDX_OP_STATE_INCORRECT),
    C("M15+M:helpers.c TDR-exclusive leaf while a vCPU is in guest: lock before state",
      "finalized", lambda w: (w.enter(), w.m.tdh_mng_key_config(w.tdr))[1],
      st.TDX_OPERAND_BUSY | RCX),
    C("M15 PAGE.AUG success", "finalized",
      lambda w: w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, w.b.page()), OK),
    C("M:op_state_lookup.c PAGE.AUG allowed in OP_STATE INITIALIZED", "initialized",
      lambda w: w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, w.b.page()), OK),
    C("M:op_state_lookup.c PAGE.AUG before MNG.INIT (op-state)", "keys_configured",
      lambda w: w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, w.b.page()), st.TDX_OP_STATE_INCORRECT),
    C("M15 PAGE.AUG on a MAPPED entry", "finalized",
      lambda w: w.m.tdh_mem_page_aug(w.tdr, 0, 0, w.b.page()),
      st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX),
    C("M15 PAGE.AUG walk fails", "finalized",
      lambda w: w.m.tdh_mem_page_aug(w.tdr, NO_TABLE_GPA, 0, w.b.page()),
      st.TDX_EPT_WALK_FAILED | RCX),
    C("M15 PAGE.AUG new page in use (R8)", "finalized",
      lambda w: w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, w.td.private[0]),
      st.TDX_PAGE_METADATA_INCORRECT | R8),
]


def _addcx_n(w, vp, n):
    """TDH.VP.ADDCX `n` more pages; the last call's result."""
    return [w.m.tdh_vp_addcx(vp, w.b.page()) for _ in range(n)][-1]


def _vp_partial(w):
    """A vCPU just created by TDH.VP.CREATE, with no TDCX page added yet."""
    vp = w.b.page()
    assert w.m.tdh_vp_create(w.tdr, vp).status == OK
    return vp


@pytest.mark.parametrize("stage,kw,action,expect", BUILD)
def test_build_leaves(td_at, stage, kw, action, expect):
    run_case(td_at, stage, kw, action, expect)


def test_build_effects(td_at):
    """[M15]: lifecycle and KOT as each build step completes; [M15-PAMT]: PAMT type/owner."""
    w = td_at("created")
    m, tdr = w.m, w.tdr
    assert m.td(tdr).lifecycle == Lifecycle.TD_HKID_ASSIGNED
    assert m.kot[w.td.hkid] == KotState.HKID_ASSIGNED
    assert m.pamt.page_type(tdr) == PageType.PT_TDR
    assert m.tdh_mng_key_config(tdr, lp=0).status == OK
    assert m.td(tdr).lifecycle == Lifecycle.TD_HKID_ASSIGNED  # one package of two
    assert m.tdh_mng_key_config(tdr, lp=2).status == OK
    assert m.td(tdr).lifecycle == Lifecycle.TD_KEYS_CONFIGURED
    w.b.add_tdcs(w.td)
    assert all(m.pamt.entries[p >> 12].owner == tdr for p in w.td.tdcs)
    w.b.init(w.td)
    assert m.td(tdr).tdcs.op_state == OpState.INITIALIZED
    vp = w.b.add_vcpu(w.td, lp=3)
    assert m.vcpus[vp].assoc_lpid == 3 and m.td(tdr).tdcs.num_assoc_vcpus == 1
    w.b.add_page(w.td, 0)
    assert m.td(tdr).tdcs.sept.walk(0, 0).state == SeptState.MAPPED
    # chldcnt: TDCS + TDVPR + TDCX + 3 S-EPT pages + 1 guest page
    assert m.td(tdr).chldcnt == m.tdcs_pages + 1 + m.tdcx_per_vcpu + 3 + 1
    w.b.finalize(w.td)
    assert m.td(tdr).tdcs.op_state == OpState.RUNNABLE
    pa = w.b.aug(w.td, FREE_GPA)
    assert m.td(tdr).tdcs.sept.walk(FREE_GPA, 0).state == SeptState.PENDING
    assert m.pamt.entries[pa >> 12].pt == PageType.PT_REG
    assert not m.check_invariants()


def test_mng_create_kot_busy(td_at):
    """M:tdh_mng_create.c: the KOT lock is a try-lock; a concurrent CREATE holding it
    -> BUSY | KOT."""
    w = td_at("created")
    g = w.m.stepwise("tdh_mng_create", w.b.page(), 40, lp=1)
    next(g)  # preempted inside CREATE, KOT held exclusively
    res = w.m.tdh_mng_create(w.b.page(), 41, lp=2)
    assert res.status == st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_KOT
    assert finish(g).status == OK
    assert w.m.tdh_mng_create(w.b.page(), 41, lp=2).status == OK

