"""Kernel side of Dynamic PAMT: refcounts, tdx_pamt_get/put, control pages, the per-vCPU
cache, a whole TD life, and the allocation policies of the design debate.
Sources: the Dynamic PAMT v6 patches ([V6-03] to [V6-09]), the allocation debate ([RFC-08],
[V2-THREAD], [V3-CL], [V4-CL]) and [V2-CL]."""

from __future__ import annotations

import pytest

from tdxedu.kvm.host import Host
from tdxedu.kvm.pamt import (
    ALLOC_POLICIES,
    TDX_PAMT_CACHE_TARGET,
    TdxPamtCache,
    tdx_pamt_get,
    tdx_pamt_put,
    tdx_topup_pamt_cache,
    thp_collapse,
    vcpu_pamt_cache,
)
from tdxedu.kvm.tdx import TEARDOWN_POLICIES, _gmem_alloc, tdx_map_private_gfn
from tdxedu.scenarios import RunningTd
from tdxedu.tdx import PageType
from tdxedu.tdx import status as st
from tdxedu.trace import run_to_completion

M2 = 2 << 20


def counts(host):
    c = host.module.counts
    return c.get("tdh_phymem_pamt_add", 0), c.get("tdh_phymem_pamt_remove", 0)


def test_two_pages_one_range_one_add_one_remove():
    """[V6-05]: two gets on one 2 MB range need one pair (ADD on 0->1 only); the put
    that drops the last reference removes it (REMOVE on 1->0) and the refcount is 0."""
    host = Host(memory=8 << 20, dynamic_pamt=True)
    pfn_a, pfn_b = (M2 >> 12) + 3, (M2 >> 12) + 7
    assert run_to_completion(tdx_pamt_get(host, pfn_a)) == 0
    assert run_to_completion(tdx_pamt_get(host, pfn_b)) == 0
    assert counts(host) == (1, 0) and host.pamt.refcount(pfn_a) == 2
    run_to_completion(tdx_pamt_put(host, pfn_a))
    assert counts(host) == (1, 0) and host.pamt.refcount(pfn_b) == 1
    assert host.module.pamt.range_pt(M2) == PageType.PT_PAMT
    run_to_completion(tdx_pamt_put(host, pfn_b))
    assert counts(host) == (1, 1) and host.pamt.refcount(pfn_b) == 0
    assert host.module.pamt.range_pt(M2) == PageType.PT_NDA
    assert host.allocator.in_use == 0  # the pair went back to the page allocator


def test_put_without_reference_warns():
    host = Host(memory=4 << 20, dynamic_pamt=True)
    run_to_completion(tdx_pamt_put(host, 5))
    assert host.pamt.warnings and counts(host) == (0, 0)


def test_cache_get_takes_pages_from_the_cache_and_empty_cache_is_enomem():
    """[V6-09]: under mmu_lock the pair comes from the vCPU's cache (topped up to 10
    pages before the lock); an empty cache cannot allocate there."""
    host = Host(memory=8 << 20, dynamic_pamt=True)
    cache = TdxPamtCache()
    assert run_to_completion(tdx_pamt_get(host, M2 >> 12, cache)) == -12  # -ENOMEM
    tdx_topup_pamt_cache(host, cache)
    assert cache.cnt == TDX_PAMT_CACHE_TARGET == 10
    assert run_to_completion(tdx_pamt_get(host, M2 >> 12, cache)) == 0
    assert cache.cnt == 8


@pytest.mark.parametrize("strategy", TEARDOWN_POLICIES)
@pytest.mark.parametrize("memory,vcpus", [("64K", 1), ("3M", 2)])
def test_full_td_life_ends_with_no_pairs_no_refcounts_nothing_leaked(strategy, memory, vcpus):
    """[V6-07], [V6-09]: a TD built and torn down with DPAMT: every PAMT reference dropped (removal,
    reclaim, vCPU free), every pair removed, no page leaked; #ADD == #REMOVE."""
    td = RunningTd(memory=memory, vcpus=vcpus, dynamic_pamt=True)
    host = td.host
    assert host.pamt.pairs_installed() >= 1
    in_use = {e.pfn >> 9 for e in host.module.pamt.in_use()}
    assert set(host.pamt.pamt_refcounts) == in_use  # a reference for every range in use
    for idx, n in host.pamt.pamt_refcounts.items():
        assert n == host.module.pamt.pages_in_use_4k(idx << 21)
    assert host.module.check_invariants() == []
    report = td.teardown(strategy)
    assert report.ok, report.summary()
    assert report.pamt_pairs == 0 and report.pamt_refcounts == 0
    assert host.module.pamt.pamt_pages == set() and host.allocator.in_use == 0
    add, remove = counts(host)
    assert add == remove > 0


def test_static_pamt_has_no_pamt_calls():
    """The default host is static PAMT: no PAMT.ADD/REMOVE and no kernel DPAMT state."""
    td = RunningTd(memory="64K", vcpus=1)
    assert td.host.pamt is None
    td.teardown()
    assert counts(td.host) == (0, 0)


def test_unknown_policy_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="vcpu-cache, phys-prepare, kmem-cache-ctor"):
        RunningTd(memory="64K", dynamic_pamt=True, pamt_policy="mempool")
    with pytest.raises(ValueError, match="allowed"):
        Host(dynamic_pamt=True, pamt_policy="nope")
    assert ALLOC_POLICIES == ("vcpu-cache", "phys-prepare", "kmem-cache-ctor", "gmem-prepare",
                              "module-hint")


def test_phys_prepare_fails_where_no_vcpu_pool_reaches():
    """[RFC-08] phys_prepare(): the pool is reached only through a vCPU the caller passes; the
    populate path (KVM_TDX_INIT_MEM_REGION here) has none -> -ENOMEM and a KVM_BUG_ON."""
    with pytest.raises(MemoryError, match="ENOMEM"):
        RunningTd(memory="64K", vcpus=1, dynamic_pamt=True, pamt_policy="phys-prepare")
    ok = RunningTd(memory="64K", vcpus=1, dynamic_pamt=True, pamt_policy="phys-prepare",
                   initial_pages=0)  # the fault path passes its vCPU: works
    assert ok.teardown().ok


def test_kmem_cache_ctor_holds_pamt_with_no_td_running():
    """[RFC-08] Kirill on the kmem_cache constructor: pooled S-EPT pages keep PAMT memory with
    zero TDs, which makes a real PAMT leak hard to tell from caching."""
    td = RunningTd(memory="64K", vcpus=1, dynamic_pamt=True, pamt_policy="kmem-cache-ctor")
    report = td.teardown()
    assert not td.host.module.tds  # no TD at all
    assert report.pamt_pairs >= 1 and report.pamt_refcounts == len(td.host.pamt.sept_kmem_cache)
    assert not report.ok and not report.bugs and not report.leaked_pages


def test_gmem_prepare_thp_collapse_breaks_coverage():
    """[RFC-08] Kirill on kvm_arch_gmem_prepare(): THP collapses between allocation and EPT
    mapping, so the mapped pfn is not the prepared one: PAGE.AUG fails with
    TDX_MISSING_PAMT_PAGE_PAIR and the prepared reference leaks."""
    td = RunningTd(memory="64K", vcpus=1, dynamic_pamt=True, pamt_policy="gmem-prepare")
    kt, v0 = td.kt, td.kvm.vcpus[0]
    gpa = td.pages * 4096
    run_to_completion(_gmem_alloc(kt, gpa, v0.cpu))  # guest_memfd allocates + prepares
    refs = sum(td.host.pamt.pamt_refcounts.values())
    thp_collapse(kt, gpa)
    tdx_topup_pamt_cache(td.host, vcpu_pamt_cache(v0))
    err = run_to_completion(tdx_map_private_gfn(td.kvm, gpa, v0.cpu, v0))
    assert err == st.TDX_MISSING_PAMT_PAGE_PAIR | st.TDX_OPERAND_ID_R8
    assert sum(td.host.pamt.pamt_refcounts.values()) == refs  # the old reference remains
    report = td.teardown()
    assert report.pamt_refcounts == 1 and report.pamt_pairs == 1 and not report.ok


def test_vcpu_cache_same_scenario_maps_fine():
    """The v6 design takes the reference at mapping time, so a collapse does not matter."""
    td = RunningTd(memory="64K", vcpus=1, dynamic_pamt=True)
    kt, v0 = td.kt, td.kvm.vcpus[0]
    gpa = td.pages * 4096
    run_to_completion(_gmem_alloc(kt, gpa, v0.cpu))
    thp_collapse(kt, gpa)
    tdx_topup_pamt_cache(td.host, vcpu_pamt_cache(v0))
    assert run_to_completion(tdx_map_private_gfn(td.kvm, gpa, v0.cpu, v0)) is None
    assert td.teardown().ok


def test_vcpu_free_frees_the_unused_cache():
    """[V6-09]: unused cache pages were never given to the module; tdx_vcpu_free frees
    them (the full-life test checks nothing is left; here the cache was non-empty)."""
    td = RunningTd(memory="64K", vcpus=1, dynamic_pamt=True)
    assert vcpu_pamt_cache(td.kvm.vcpus[0]).cnt > 0
    assert td.teardown().ok
    assert vcpu_pamt_cache(td.kvm.vcpus[0]).cnt == 0
