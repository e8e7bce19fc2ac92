"""A TD's whole life, scripted the way upstream KVM drives it ([K616] [RE-P2]), with
the SEAMCALL count of every leaf checked against the closed form of `tdxedu.cost.counts`."""

from __future__ import annotations

import pytest
from tdx_cases import OK, World, new_module

from tdxedu.tdx import status as st
from tdxedu.tdx.pamt import PAGE_SIZE, PageType
from tdxedu.tdx.td import KotState
from tdxedu.tdx.testing import EXTENDMR_CHUNK, TdBuilder


def full_life(P: int, V: int, rounds: int):
    m = new_module(cache_wb_rounds=rounds)
    b = TdBuilder(m)
    # KVM_TDX_INIT_VM / INIT_VCPU / INIT_MEM_REGION / FINALIZE_VM ([K616])
    added = (P + 1) // 2  # initial memory via PAGE.ADD, the rest AUG + guest ACCEPT at runtime
    td = b.build("initialized", vcpus=V, pages=added)
    b.finalize(td)
    w = World(m, b, td)
    for i in range(added, P):
        b.aug(td, i * PAGE_SIZE)
    # run every vCPU; vCPU 0 accepts the AUGed pages
    for vp in td.vcpus:
        w.enter(vp)
    v0 = td.vcpus[0]
    for i in range(added, P):
        assert m.tdg_mem_page_accept(v0, i * PAGE_SIZE, lp=td.vcpu_lp[v0]).status == OK
    # Stage C: guest_memfd release, per page BLOCK -> TRACK -> (kick vCPUs) -> REMOVE -> WBINVD
    for n, (gpa, hpa) in enumerate(sorted(td.private.items())):
        assert m.tdh_mem_range_block(td.tdr, gpa, 0).status == OK
        assert m.tdh_mem_track(td.tdr).status == OK
        if n == 0:  # KVM_REQ_OUTSIDE_GUEST_MODE: every vCPU leaves the guest
            assert m.tdh_mem_page_remove(td.tdr, gpa, 0).status == st.TDX_TLB_TRACKING_NOT_DONE | 1
            for vp in td.vcpus:
                assert w.exit(vp).status == OK
        res = m.tdh_mem_page_remove(td.tdr, gpa, 0)
        assert res.status == OK and res.rcx == hpa
        assert m.tdh_phymem_page_wbinvd_hkid(td.hkid, hpa).status == OK
    # D1 tdx_mmu_release_hkid: VP.FLUSH each vCPU on its LP, VPFLUSHDONE, CACHE.WB per package
    for vp in td.vcpus:
        assert m.tdh_vp_flush(vp, lp=td.vcpu_lp[vp]).status == OK
    assert m.tdh_mng_vpflushdone(td.tdr).status == OK
    for pkg in range(m.num_packages):
        lp = pkg * m.lps_per_package
        res = m.tdh_phymem_cache_wb(0, lp=lp)
        while res.status == st.TDX_INTERRUPTED_RESUMABLE:
            res = m.tdh_phymem_cache_wb(1, lp=lp)
        assert res.status == OK
    assert m.tdh_mng_key_freeid(td.tdr).status == OK
    # D3 tdx_vcpu_free: TDCX then TDVPR; S-EPT pages; tdx_vm_destroy: TDCS, TDR + WBINVD(TDR)
    for vp in td.vcpus:
        for pa in td.tdcx[vp] + [vp]:
            assert m.tdh_phymem_page_reclaim(pa).status == OK
    for pa in td.sept_pages.values():
        assert m.tdh_phymem_page_reclaim(pa).status == OK
    for pa in td.tdcs:
        assert m.tdh_phymem_page_reclaim(pa).status == OK
    assert m.tdh_phymem_page_reclaim(td.tdr).status == OK
    assert m.tdh_phymem_page_wbinvd_tdr(td.tdr).status == OK
    return m, td, added


@pytest.mark.parametrize("P,V,rounds", [(1, 1, 1), (4, 2, 1), (9, 3, 2), (16, 4, 3), (2, 5, 1)])
def test_full_life(P, V, rounds):
    m, td, added = full_life(P, V, rounds)
    # ends clean: every page PT_NDA, the HKID free, no dirty cache lines, nothing inconsistent
    assert not m.pamt.in_use()
    assert all(e.pt == PageType.PT_NDA for e in m.pamt.entries.values())
    assert m.kot[td.hkid] == KotState.HKID_FREE
    assert not any(m.dirty_keyids.values())
    assert not m.tds and not m.vcpus
    assert not m.check_invariants()
    # the teardown and the build ([K616]): SEAMCALLs per leaf
    K, C, X = m.num_packages, m.tdcs_pages, m.tdcx_per_vcpu
    S = len(td.sept_pages)
    assert S == 3  # all pages sit below one 2 MiB table: levels 3, 2, 1
    expected = {
        "tdh_mng_create": 1, "tdh_mng_key_config": K, "tdh_mng_addcx": C, "tdh_mng_init": 1,
        "tdh_vp_create": V, "tdh_vp_addcx": V * X, "tdh_vp_init": V,
        "tdh_mem_sept_add": S, "tdh_mem_page_add": added,
        "tdh_mr_extend": added * PAGE_SIZE // EXTENDMR_CHUNK, "tdh_mr_finalize": 1,
        "tdh_mem_page_aug": P - added, "tdg_mem_page_accept": P - added,
        "tdh_vp_enter": V, "td_exit": V,
        # per private page: BLOCK -> TRACK -> REMOVE (+1 failed REMOVE before the kick)
        "tdh_mem_range_block": P, "tdh_mem_track": P, "tdh_mem_page_remove": P + 1,
        # once per TD
        "tdh_vp_flush": V, "tdh_mng_vpflushdone": 1, "tdh_phymem_cache_wb": K * rounds,
        "tdh_mng_key_freeid": 1,
        "tdh_phymem_page_reclaim": V * (X + 1) + S + C + 1,
        "tdh_phymem_page_wbinvd": P + 1,
    }
    counts = {k: v for k, v in m.counts.items() if v}
    assert counts == {k: v for k, v in expected.items() if v}
