"""The op-state table and `check_state_map_tdcs_and_lock`, against the TDX module 1.5 source
(niooss-ledger/tdx-module f9acbbf = 1.5.01 and f99767b = 1.5.05, the same here):
`include/auto_gen/op_state_lookup.c` (`seamcall_state_lookup`), `src/common/helpers/helpers.c`
(`check_td_in_correct_build_state`, `check_any_td_state_map_tdcs_and_lock`) and the leaf
files named per test."""

from __future__ import annotations

import pytest
from tdx_cases import FREE_GPA, OK

from tdxedu.tdx import Leaf
from tdxedu.tdx import status as st
from tdxedu.tdx.opstate import ALLOWED, OP_STATE_COLUMNS, SEAMCALL_STATE_LOOKUP
from tdxedu.tdx.td import OpState

OP_BUSY = st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_OP_STATE


def _hold_op_state(w):
    """Another SEAMCALL holds the TD's OP_STATE lock exclusively (as migration leaves do)."""
    assert w.m.td(w.tdr).tdcs.op_state_lock.try_exclusive("other", True)


def test_table_rows_have_one_digit_per_op_state():
    """op_state_lookup.h: NUM_OP_STATES = 11 columns, op_state_e order."""
    assert len(OP_STATE_COLUMNS) == 11
    assert [OP_STATE_COLUMNS[s] for s in OpState] == ["UNINITIALIZED", "INITIALIZED", "RUNNABLE"]
    for leaf, row in SEAMCALL_STATE_LOOKUP.items():
        assert len(row) == 11 and set(row) <= {"0", "1"}, leaf


@pytest.mark.parametrize("leaf,states", [
    (Leaf.TDH_MNG_INIT, {OpState.UNINITIALIZED}),
    (Leaf.TDH_MNG_ADDCX, {OpState.UNINITIALIZED}),
    (Leaf.TDH_VP_CREATE, {OpState.INITIALIZED}),
    (Leaf.TDH_VP_ADDCX, {OpState.INITIALIZED}),
    (Leaf.TDH_VP_INIT, {OpState.INITIALIZED}),
    (Leaf.TDH_MEM_PAGE_ADD, {OpState.INITIALIZED}),
    (Leaf.TDH_MR_EXTEND, {OpState.INITIALIZED}),
    (Leaf.TDH_MR_FINALIZE, {OpState.INITIALIZED}),
    (Leaf.TDH_MEM_PAGE_AUG, {OpState.INITIALIZED, OpState.RUNNABLE}),
    (Leaf.TDH_VP_ENTER, {OpState.RUNNABLE}),
    (Leaf.TDH_VP_FLUSH, set(OpState)),
    (Leaf.TDH_MNG_RD, {OpState.INITIALIZED, OpState.RUNNABLE}),
    (Leaf.TDH_VP_WR, {OpState.INITIALIZED, OpState.RUNNABLE}),
    (Leaf.TDH_MNG_KEY_CONFIG, set()),  # no row: the leaf never looks
])
def test_allowed_states_read_from_the_module_rows(leaf, states):
    assert ALLOWED[leaf] == states


# --- leaves that now make the check they skipped ----------------------------------------------
def _vcpu_without_tdcx(w):
    vp = w.b.page()
    assert w.m.tdh_vp_create(w.tdr, vp).status == OK
    return vp


def test_vp_addcx_checks_the_td_state(td_at):
    """tdh_vp_addcx.c calls check_state_map_tdcs_and_lock(TDH_VP_ADDCX_LEAF): row [4] allows
    INITIALIZED only, so adding TDCX to a vCPU after TDH.MR.FINALIZE is OP_STATE_INCORRECT."""
    w = td_at("initialized", pages=0)
    vp = _vcpu_without_tdcx(w)
    assert w.m.tdh_mr_finalize(w.tdr).status == OK
    assert w.m.tdh_vp_addcx(vp, w.b.page()).status == st.TDX_OP_STATE_INCORRECT
    assert not w.m.check_invariants()


def test_vp_addcx_takes_the_op_state_lock(td_at):
    """tdh_vp_addcx.c: OP_STATE lock shared (BUSY | OP_STATE) before the vCPU state."""
    w = td_at("initialized", pages=0)
    _hold_op_state(w)
    assert w.m.tdh_vp_addcx(w.vp, w.b.page()).status == OP_BUSY  # VP.INIT done: state wrong too


def test_vp_init_after_finalize_is_op_state_incorrect(td_at):
    """tdh_vp_init.c: check_state_map_tdcs_and_lock(TDH_VP_INIT_LEAF), row [22] = INITIALIZED
    only: a vCPU cannot be initialised once the TD is RUNNABLE."""
    w = td_at("initialized", pages=0)
    vp = w.b.add_vcpu(w.td, init=False)
    assert w.m.tdh_mr_finalize(w.tdr).status == OK
    assert w.m.tdh_vp_init(vp, lp=1).status == st.TDX_OP_STATE_INCORRECT


def test_vp_init_maps_tdvps_before_the_vcpu_state(td_at):
    """tdh_vp_init.c: map_tdvps (too few TDCX pages -> TDCX_NUM_INCORRECT) comes before the
    VCPU_UNINITIALIZED check."""
    w = td_at("initialized", pages=0)
    vp = _vcpu_without_tdcx(w)
    w.m.vcpus[vp].state = w.m.vcpus[w.vp].state  # as if already initialised
    assert w.m.tdh_vp_init(vp).status == st.TDX_TDCX_NUM_INCORRECT


def test_page_aug_before_finalize_is_allowed(td_at):
    """op_state_lookup.c row [6] (TDH.MEM.PAGE.AUG) allows INITIALIZED: AUG before
    TDH.MR.FINALIZE succeeds and leaves a PENDING entry."""
    w = td_at("initialized", pages=1)
    assert w.m.tdh_mem_page_aug(w.tdr, FREE_GPA, 0, w.b.page()).status == OK


# --- TDX_LOCK_NO_LOCK leaves ---------------------------------------------------------------------
@pytest.mark.parametrize("call,stage", [
    pytest.param(lambda w: w.m.tdh_mr_extend(w.tdr, 0), "initialized", id="tdh_mr_extend.c"),
    pytest.param(lambda w: w.m.tdh_mr_finalize(w.tdr), "initialized", id="tdh_mr_finalize.c"),
    pytest.param(lambda w: w.m.tdh_mem_page_add(w.tdr, FREE_GPA, w.b.page()), "initialized",
                 id="tdh_mem_page_add.c"),
    pytest.param(lambda w: w.m.tdh_mng_init(w.tdr), "keys_configured", id="tdh_mng_init.c"),
])
def test_tdr_exclusive_leaves_do_not_lock_op_state(td_at, call, stage):
    """These leaves hold the TDR exclusively and pass TDX_LOCK_NO_LOCK to
    check_state_map_tdcs_and_lock: a held OP_STATE lock does not make them BUSY."""
    w = td_at(stage)
    _hold_op_state(w)
    assert call(w).status == OK


def test_vp_create_does_lock_op_state(td_at):
    """tdh_vp_create.c passes TDX_LOCK_SHARED: BUSY | OP_STATE."""
    w = td_at("initialized", pages=0)
    _hold_op_state(w)
    assert w.m.tdh_vp_create(w.tdr, w.b.page()).status == OP_BUSY


# --- FATAL is checked first -------------------------------------------------------------------
@pytest.mark.parametrize("call,stage", [
    pytest.param(lambda w: w.m.tdh_mng_key_config(w.tdr, lp=0), "created",
                 id="tdh_mng_key_config.c"),
    pytest.param(lambda w: w.m.tdh_mng_addcx(w.tdr, w.b.page()), "keys_configured",
                 id="tdh_mng_add_cx.c"),
    pytest.param(lambda w: w.m.tdh_mng_init(w.tdr), "keys_configured", id="tdh_mng_init.c"),
    pytest.param(lambda w: w.m.tdh_vp_create(w.tdr, w.b.page()), "initialized",
                 id="tdh_vp_create.c"),
    pytest.param(lambda w: w.m.tdh_vp_init(w.td.vcpus[-1]), "initialized", id="tdh_vp_init.c"),
    pytest.param(lambda w: w.m.tdh_mr_finalize(w.tdr), "initialized", id="tdh_mr_finalize.c"),
])
def test_fatal_td_is_td_fatal(td_at, call, stage):
    """A TD the module marked FATAL: the state check (check_td_in_correct_build_state, or the
    leaf's own FATAL test before its lifecycle test) returns TDX_TD_FATAL."""
    w = td_at(stage)
    if stage == "initialized":
        w.b.add_vcpu(w.td, init=False)  # for VP.INIT
    w.m.td(w.tdr).fatal = True
    assert call(w).status == st.TDX_TD_FATAL


def test_vp_flush_makes_no_op_state_check(td_at):
    """tdh_vp_flush.c maps the TDCS without check_state_map_tdcs_and_lock: a held OP_STATE lock
    or any OP_STATE does not stop it (its row [18] allows every state anyway)."""
    w = td_at("finalized")
    _hold_op_state(w)
    assert w.m.tdh_vp_flush(w.vp, lp=w.vp_lp).status == OK
    assert w.m.tdh_vp_flush(w.vp, lp=w.vp_lp).status == st.TDX_VCPU_NOT_ASSOCIATED
