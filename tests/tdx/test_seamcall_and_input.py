"""The register-level `TdxModule.seamcall()` and bad input: statuses, never exceptions, except
for Python misuse (a non-int argument), which is a TypeError saying what was expected."""

from __future__ import annotations

import pytest
from tdx_cases import FREE_GPA, OK, RCX, RDX, build_world

from tdxedu.tdx import Leaf
from tdxedu.tdx import status as st
from tdxedu.tdx.module import SEAMCALL_MODELLED
from tdxedu.tdx.sept import SeptState

# M:tdx_vmm_dispatcher.c: unknown leaf / bad version -> TDX_OPERAND_INVALID | OPERAND_ID_RAX (0)
BAD_RAX = st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX


@pytest.mark.parametrize("rax", [
    pytest.param(200, id="M:tdx_vmm_dispatcher.c unknown leaf number"),
    pytest.param(0xFFFF, id="M:tdx_vmm_dispatcher.c unknown leaf 0xFFFF"),
    pytest.param(1 << 24 | Leaf.TDH_MNG_CREATE, id="M:tdx_vmm_dispatcher.c reserved RAX bits"),
    pytest.param(1 << 16 | Leaf.TDH_MNG_CREATE, id="M:tdx_vmm_dispatcher.c version 1, no versions"),
    pytest.param(2 << 16 | Leaf.TDH_VP_INIT, id="M:tdh_vp_init.c VP.INIT version 2"),
    pytest.param(Leaf.TDH_PHYMEM_PAMT_ADD, id="M2:tdh_phymem_pamt_add.c DPAMT not enabled"),
])
def test_seamcall_unsupported(module, rax):
    res = module.seamcall(rax, 0x1000, 33)
    assert res.status == BAD_RAX and int(res.status) == 0xC000010000000000
    assert not module.tds  # nothing happened


def test_seamcall_key_reclaimid_is_a_noop(module):
    """[M15]: TDH.MNG.KEY.RECLAIMID (27) always returns TDX_SUCCESS and does nothing."""
    assert module.seamcall(Leaf.TDH_MNG_KEY_RECLAIMID, 0x1234).status == OK
    assert Leaf.TDH_MNG_KEY_RECLAIMID in SEAMCALL_MODELLED


def test_seamcall_full_build_by_registers(module):
    """A TD built with raw registers (M:tdx_vmm_dispatcher.c register assignment) behaves like
    the kernel-shaped methods: same statuses, same state."""
    m = module
    pages = iter(range(0x20_0000, 0x40_0000, 0x1000))
    tdr = next(pages)
    assert m.seamcall(Leaf.TDH_MNG_CREATE, tdr, 33).status == OK
    assert m.seamcall(Leaf.TDH_MNG_KEY_CONFIG, tdr, lp=0).status == OK
    assert m.seamcall(Leaf.TDH_MNG_KEY_CONFIG, tdr, lp=2).status == OK
    for _ in range(m.tdcs_pages):
        assert m.seamcall(Leaf.TDH_MNG_ADDCX, next(pages), tdr).status == OK
    assert m.seamcall(Leaf.TDH_MNG_INIT, tdr, 0).status == OK
    vp = next(pages)
    assert m.seamcall(Leaf.TDH_VP_CREATE, vp, tdr).status == OK
    for _ in range(m.tdcx_per_vcpu):
        assert m.seamcall(Leaf.TDH_VP_ADDCX, next(pages), vp).status == OK
    assert m.seamcall(1 << 16 | Leaf.TDH_VP_INIT, vp, 0, 0, lp=1).status == OK  # version 1
    for level in (3, 2, 1):
        assert m.seamcall(Leaf.TDH_MEM_SEPT_ADD, 0 | level, tdr, next(pages)).status == OK
    assert m.seamcall(Leaf.TDH_MEM_PAGE_ADD, 0, tdr, next(pages), 0).status == OK
    assert m.seamcall(Leaf.TDH_MEM_PAGE_ADD, FREE_GPA | 1, tdr, next(pages)).status == \
        st.TDX_OPERAND_INVALID | RCX  # PAGE.ADD is 4K only
    assert m.seamcall(Leaf.TDH_MR_EXTEND, 0x100, tdr).status == OK
    assert m.seamcall(Leaf.TDH_MR_FINALIZE, tdr).status == OK
    assert m.seamcall(Leaf.TDH_MEM_PAGE_AUG, FREE_GPA, tdr, next(pages)).status == OK
    # page_info reserved bits 11:3 set -> OPERAND_INVALID | RCX (verify_page_info_input)
    assert m.seamcall(Leaf.TDH_MEM_RANGE_BLOCK, 0 | 0x8, tdr).status == st.TDX_OPERAND_INVALID | RCX
    assert m.seamcall(Leaf.TDH_MEM_RANGE_BLOCK, 0, tdr).status == OK
    assert m.seamcall(Leaf.TDH_MEM_TRACK, tdr).status == OK
    res = m.seamcall(Leaf.TDH_MEM_PAGE_REMOVE, 0, tdr)
    assert res.status == OK and res.rcx
    assert m.seamcall(Leaf.TDH_PHYMEM_PAGE_WBINVD, res.rcx | 33 << 46).status == OK
    assert m.seamcall(Leaf.TDH_VP_ENTER, vp, lp=1).status == OK
    assert m.td(tdr).tdcs.sept.walk(FREE_GPA, 0).state == SeptState.PENDING
    assert m.seamcall(Leaf.TDH_VP_FLUSH, vp, lp=1).status == st.TDX_OPERAND_BUSY | RCX
    m.td_exit(vp, lp=1)
    assert m.seamcall(Leaf.TDH_VP_FLUSH, vp, lp=1).status == OK
    assert m.seamcall(Leaf.TDH_MNG_VPFLUSHDONE, tdr).status == OK
    assert m.seamcall(Leaf.TDH_PHYMEM_CACHE_WB, 0, lp=0).status == OK
    assert m.seamcall(Leaf.TDH_PHYMEM_CACHE_WB, 0, lp=3).status == OK
    assert m.seamcall(Leaf.TDH_MNG_KEY_FREEID, tdr).status == OK
    assert m.seamcall(Leaf.TDH_PHYMEM_PAGE_RECLAIM, tdr).status == st.TDX_TD_ASSOCIATED_PAGES_EXIST
    assert m.seamcall(Leaf.TDH_MNG_CREATE, next(pages), 1 << 16 | 33).status == \
        st.TDX_OPERAND_INVALID | RDX  # hkid_api_input_t reserved bits
    assert not m.check_invariants()


# --- bad input: the module's status, never an exception --------------------------------------
@pytest.mark.parametrize("call,expect", [
    pytest.param(lambda w: w.m.tdh_mng_key_config(w.tdr + 1), st.TDX_OPERAND_INVALID | RCX,
                 id="M:helpers.c unaligned TDR"),
    pytest.param(lambda w: w.m.tdh_mem_track(0x7FFF_F000), st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX,
                 id="M:helpers.c unknown address (outside TDMR)"),
    pytest.param(lambda w: w.m.tdh_mem_track(w.td.tdcs[1]), st.TDX_PAGE_METADATA_INCORRECT | RCX,
                 id="M:helpers.c wrong page type (TDCX given as TDR)"),
    pytest.param(lambda w: w.m.tdh_vp_flush(w.tdr, lp=0), st.TDX_PAGE_METADATA_INCORRECT | RCX,
                 id="M:tdh_vp_flush.c TDR given as TDVPR"),
    pytest.param(lambda w: w.m.tdh_mem_page_remove(_other_td(w), 0, 0),
                 st.TDX_EPT_WALK_FAILED | RCX, id="M15 wrong owner: other TD's S-EPT"),
    pytest.param(lambda w: w.m.tdh_phymem_page_reclaim(w.td.private[0]),
                 st.TDX_LIFECYCLE_STATE_INCORRECT, id="M15 wrong lifecycle"),
    pytest.param(lambda w: w.m.tdh_vp_flush(w.vp, lp=3), st.TDX_VCPU_NOT_ASSOCIATED,
                 id="M15 wrong LP"),
    pytest.param(lambda w: w.m.tdh_mem_page_aug(w.tdr, -4096, 0, w.b.page()),
                 st.TDX_OPERAND_INVALID | RCX, id="M:helpers.c negative GPA"),
    pytest.param(lambda w: w.m.tdh_mem_range_block(w.tdr, 0, 7), st.TDX_OPERAND_INVALID | RCX,
                 id="M:helpers.c level out of range"),
    pytest.param(lambda w: w.m.tdh_phymem_page_reclaim(-4096), st.TDX_OPERAND_INVALID | RCX,
                 id="M:tdh_phymem_page_reclaim.c negative PA"),
])
def test_bad_input_gets_a_status(td_at, call, expect):
    w = td_at("finalized")
    res = call(w)
    assert res.status == expect
    assert not w.m.check_invariants()


def _other_td(w):
    return w.b.build("finalized", pages=0).tdr


@pytest.mark.parametrize("call,words", [
    (lambda m: m.tdh_mng_create("0x1000", 33), ["td", "int", "TDR"]),
    (lambda m: m.tdh_mem_page_aug(0x1000, 0.5, 0, 0x2000), ["gpa", "int", "float"]),
    (lambda m: m.tdh_mem_range_block(0x1000, 0, None), ["level", "int", "NoneType"]),
    (lambda m: m.tdh_phymem_cache_wb("start"), ["resume", "int"]),
    (lambda m: m.tdh_vp_enter(0x1000, lp="1"), ["lp", "int"]),
    (lambda m: m.seamcall(Leaf.TDH_MEM_TRACK, [0x1000]), ["rcx", "int", "list"]),
    (lambda m: m.td_exit(0x1000, reason=3), ["reason", "str"]),
])
def test_non_int_argument_is_a_type_error(module, call, words):
    with pytest.raises(TypeError) as info:
        call(module)
    for word in words:
        assert word in str(info.value)
    assert not module.counts  # nothing reached the module


def test_lp_that_does_not_exist_is_value_error(module):
    with pytest.raises(ValueError, match="lp=9"):
        module.tdh_mem_track(0x1000, lp=9)


def test_wbcache_bool_resume_accepted(td_at):
    """KVM passes resume as a bool-ish int; True is RESUME ([M15] tdh_phymem_cache_wb.c: RCX=1)."""
    w = td_at("finalized")
    assert w.m.tdh_phymem_cache_wb(True).status == st.TDX_WBCACHE_RESUME_ERROR


def test_world_builder_helpers(module):
    w = build_world(module, "finalized", vcpus=3, pages=2)
    lps = [w.td.vcpu_lp[v] for v in w.td.vcpus]
    assert {module.package_of(lp) for lp in lps} == {0, 1}  # vCPUs span both packages
    assert len(w.td.private) == 2
