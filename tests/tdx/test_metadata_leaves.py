"""TDH.MNG.RD/WR and TDH.VP.RD/WR against TDX module 1.5.05 `tdh_mng_rd_wr.c`,
`tdh_vp_rd_wr.c`, `src/common/metadata_handlers/metadata_generic.c` / `metadata_td.c` and the
generated field tables (`include/auto_gen/tdr_tdcs_fields_lookup.c`, `tdvps_fields_lookup.c`,
`td_vmcs_fields_lookup.c`)."""

from __future__ import annotations

import pytest
from tdx_cases import OK, RCX, build_world, new_module

from tdxedu.tdx import Leaf
from tdxedu.tdx import status as st
from tdxedu.tdx.metadata import FIELD_IDS, MD_FIELD_ID_NA, TD_FIELDS, VP_FIELDS
from tdxedu.tdx.td import OpState

F = FIELD_IDS
TDR = st.TDX_OPERAND_ID_TDR


def test_field_ids_decode_as_the_tables_say():
    """md_field_id_t: context (54:52) TD = 1 for TDR/TDCS fields, VP = 2 for TDVPS/VMCS ones;
    element size code (33:32) 3 for a 64-bit field."""
    assert {(f.field_id >> 52) & 7 for f in TD_FIELDS} == {1}
    assert {(f.field_id >> 52) & 7 for f in VP_FIELDS} == {2}
    assert (F["ATTRIBUTES"] >> 32) & 3 == 3 and (F["HKID"] >> 32) & 3 == 1


def test_mng_rd_reads_the_td_state(td_at):
    w = td_at("finalized", vcpus=2)
    m, tdr = w.m, w.tdr
    assert m.tdh_mng_rd(tdr, F["OP_STATE"]).r8 == OpState.RUNNABLE
    assert m.tdh_mng_rd(tdr, F["NUM_VCPUS"]).r8 == 2
    assert m.tdh_mng_rd(tdr, F["NUM_ASSOC_VCPUS"]).r8 == 2
    assert m.tdh_mng_rd(tdr, F["HKID"]).r8 == w.td.hkid
    assert m.tdh_mng_rd(tdr, F["CHLDCNT"]).r8 == m.td(tdr).chldcnt
    assert m.tdh_mng_rd(tdr, F["TD_EPOCH"]).r8 == 1


def test_mng_rd_before_init_and_after_hkid_release(td_at):
    """Row [11] of op_state_lookup.c excludes UNINITIALIZED; check_td_in_correct_build_state
    wants TD_KEYS_CONFIGURED, so once VPFLUSHDONE has run nothing can be read."""
    w = td_at("keys_configured")
    assert w.m.tdh_mng_rd(w.tdr, F["OP_STATE"]).status == st.TDX_OP_STATE_INCORRECT
    w = td_at("finalized")
    w.to_blocked()
    assert w.m.tdh_mng_rd(w.tdr, F["OP_STATE"]).status == st.TDX_TD_KEYS_NOT_CONFIGURED


@pytest.mark.parametrize("field_id,expect", [
    pytest.param(F["TD_CTLS"], st.TDX_METADATA_FIELD_NOT_READABLE, id="production read mask 0"),
    pytest.param(0x9010000200000099, st.TDX_METADATA_FIELD_ID_INCORRECT, id="unknown field"),
    pytest.param(F["OP_STATE"] | 1 << 34, st.TDX_METADATA_FIELD_ID_INCORRECT,
                 id="LAST_ELEMENT_IN_FIELD set"),
    pytest.param(F["OP_STATE"] | 1 << 24, st.TDX_METADATA_FIELD_ID_INCORRECT, id="reserved_0"),
    pytest.param(F["OP_STATE"] & ~(7 << 52) | 2 << 52, OK, id="context code ignored"),
    pytest.param(F["OP_STATE"] & ~(3 << 32) | 3 << 32, OK, id="element size ignored"),
])
def test_mng_rd_field_id_checks(td_at, field_id, expect):
    w = td_at("finalized")
    assert w.m.tdh_mng_rd(w.tdr, field_id).status == expect


def test_debug_td_reads_more():
    """md_get_rd_wr_mask: the debug masks apply when ATTRIBUTES.DEBUG (bit 0) is set."""
    m = new_module()
    w = build_world(m, "created")
    w.b.configure_keys(w.td)
    w.b.add_tdcs(w.td)
    assert m.tdh_mng_init(w.tdr, attributes=1).status == OK
    w.b.add_vcpu(w.td)
    assert m.tdh_mng_rd(w.tdr, F["ATTRIBUTES"]).r8 == 1
    assert m.tdh_mng_rd(w.tdr, F["TD_CTLS"]).status == OK
    res = m.tdh_vp_rd(w.vp, F["GUEST_RIP"], lp=w.vp_lp)
    assert res.status == OK and res.r8 == 0xFFF0


def test_mng_wr_hp_lock_timeout(td_at):
    """metadata_td.c: HP_LOCK_TIMEOUT is the host-writable TD field: full-mask writes only
    (WR_MASK_NOT_VALID), 10 ms .. 100 s (FIELD_VALUE_NOT_VALID); R8 returns the old value."""
    w = td_at("finalized")
    m, tdr, fid = w.m, w.tdr, F["HP_LOCK_TIMEOUT"]
    all_ones = (1 << 64) - 1
    assert m.tdh_mng_wr(tdr, fid, 50_000, 0xFFFF).status == st.TDX_METADATA_WR_MASK_NOT_VALID
    assert m.tdh_mng_wr(tdr, fid, 5, all_ones).status == st.TDX_METADATA_FIELD_VALUE_NOT_VALID
    res = m.tdh_mng_wr(tdr, fid, 50_000, all_ones)
    assert res.status == OK and res.r8 == 1_000_000
    assert m.tdh_mng_rd(tdr, fid).r8 == 50_000
    assert m.tdh_mng_wr(tdr, F["OP_STATE"], 0, all_ones).status == \
        st.TDX_METADATA_FIELD_NOT_WRITABLE


def test_vp_wr_posted_interrupt_fields_as_kvm_writes_them(td_at):
    """tdx_vcpu_init (kernel v6.16): POSTED_INTR_NV, POSTED_INTR_DESC_ADDR (bits 5:0 not
    writable: a value that changes them is FIELD_VALUE_NOT_VALID), PIN_BASED bit 7 only."""
    w = td_at("finalized")
    m, vp, lp = w.m, w.vp, w.vp_lp
    all_ones = (1 << 64) - 1
    assert m.tdh_vp_wr(vp, F["POSTED_INTR_NV"], 0xF2, 0xFFFF, lp=lp).status == OK
    assert m.tdh_vp_rd(vp, F["POSTED_INTR_NV"], lp=lp).r8 == 0xF2
    assert m.tdh_vp_wr(vp, F["POSTED_INTR_DESC_ADDR"], 0x1234_5678, all_ones, lp=lp).status == \
        st.TDX_METADATA_FIELD_VALUE_NOT_VALID
    assert m.tdh_vp_wr(vp, F["POSTED_INTR_DESC_ADDR"], 0x1234_5640, all_ones, lp=lp).status == OK
    assert m.tdh_vp_wr(vp, F["PIN_BASED_VM_EXEC_CONTROL"], 0x80, 0x80, lp=lp).status == OK
    assert m.tdh_vp_wr(vp, F["PIN_BASED_VM_EXEC_CONTROL"], 1, 1, lp=lp).status == \
        st.TDX_METADATA_FIELD_NOT_WRITABLE
    assert m.tdh_vp_rd(vp, F["VCPU_STATE_DETAILS"], lp=lp).status == OK
    assert m.tdh_vp_rd(vp, F["VCPU_STATE"], lp=lp).status == st.TDX_METADATA_FIELD_NOT_READABLE


def test_vp_rd_associates_the_vcpu(td_at):
    """tdh_vp_rd_wr.c check_and_associate_vcpu: another LP -> VCPU_ASSOCIATED; after
    TDH.VP.FLUSH a VP.RD associates the vCPU again, so TDH.MNG.VPFLUSHDONE then fails with
    FLUSHVP_NOT_DONE -- reading a vCPU after flushing it undoes the flush."""
    w = td_at("finalized")
    m, vp, lp = w.m, w.vp, w.vp_lp
    assert m.tdh_vp_rd(vp, F["VCPU_INDEX"], lp=w.other_lp(lp)).status == st.TDX_VCPU_ASSOCIATED
    assert m.tdh_vp_flush(vp, lp=lp).status == OK
    res = m.tdh_vp_rd(vp, F["ASSOC_LPID"], lp=w.other_lp(lp))
    assert res.status == OK and res.r8 == w.other_lp(lp)
    assert m.tdh_mng_vpflushdone(w.tdr).status == st.TDX_FLUSHVP_NOT_DONE
    assert not m.check_invariants()


def test_vp_rd_checks_in_order(td_at):
    """TDVPR (RCX) before its TDR (BUSY | TDR) before the vCPU state (in guest)."""
    w = td_at("finalized")
    m, vp, lp = w.m, w.vp, w.vp_lp
    assert m.tdh_vp_rd(w.tdr, F["VCPU_INDEX"], lp=lp).status == \
        st.TDX_PAGE_METADATA_INCORRECT | RCX
    w.enter()
    assert m.tdh_vp_rd(vp, F["VCPU_INDEX"], lp=lp).status == st.TDX_VCPU_STATE_INCORRECT
    w.exit()
    assert m.pamt.entry(w.tdr >> 12).lock.try_exclusive("other")
    assert m.tdh_vp_rd(vp, F["VCPU_INDEX"], lp=lp).status == st.TDX_OPERAND_BUSY | TDR


def test_rd_version_1_walks_the_fields(td_at):
    """Version 1 (dispatcher: MNG.RD and VP.RD only): the null field id returns
    TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT with the first id in RDX; a read returns the next
    id in RDX, MD_FIELD_ID_NA after the last (here: of the model's fields)."""
    w = td_at("finalized")
    m = w.m
    res = m.seamcall(1 << 16 | Leaf.TDH_MNG_RD, w.tdr, MD_FIELD_ID_NA)
    assert res.status == st.TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT and not res.status.is_error
    assert res.rdx == TD_FIELDS[0].field_id
    ids = [f.field_id for f in TD_FIELDS] + [MD_FIELD_ID_NA]
    for fid, nxt in zip(ids[:-1], ids[1:], strict=True):
        r = m.seamcall(1 << 16 | Leaf.TDH_MNG_RD, w.tdr, fid)
        # the next id comes back only on success (TD_CTLS is not readable in production)
        assert r.rdx == (nxt if r.status == OK else MD_FIELD_ID_NA), hex(fid)
    assert m.seamcall(Leaf.TDH_MNG_RD, w.tdr, F["HKID"]).rdx == 0  # version 0: RDX untouched
    assert m.seamcall(1 << 16 | Leaf.TDH_MNG_WR, w.tdr, F["HKID"]).status == \
        st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX  # MNG.WR has no versions
