"""The fault sweep (`tdxedu.mutants.inject`): every SEAMCALL of a runtime zap and of each
correct teardown, failed in turn ([K616-TDX] reactions, the fail_* framework's idea), on one-
and two-package hosts with CACHE.WB interrupted, under 6.16 and 6.19: no exception, no broken
invariant, nothing lost without being reported; and the same sweep finds a KVM that forgets
to report a leak."""

from __future__ import annotations

from collections import Counter

from tdxedu.mutants.inject import fault_sweep, leaf_calls


def test_every_site_and_status_leaves_nothing_unreported():
    runs = list(fault_sweep())
    assert len(runs) > 800
    assert all(r.hit for r in runs), "every armed fault fired"
    bad = [(r.kernel, r.strategy, r.leaf, r.status, r.nth, r.problems[0]) for r in runs
           if r.problems]
    assert not bad, bad[:5]
    # what hardware varies was varied: two packages, CACHE.WB interrupted, VP.FLUSH meeting a
    # vCPU with nothing to flush
    seen = Counter((r.host["packages"], r.leaf, r.status.split(" |")[0]) for r in runs)
    assert seen[(2, "tdh_phymem_cache_wb", "TDX_INTERRUPTED_RESUMABLE")]
    assert seen[(1, "tdh_vp_flush", "TDX_VCPU_NOT_ASSOCIATED")]
    sites = {r.leaf for r in runs}
    assert {"tdh_mem_range_block", "tdh_mem_track", "tdh_mem_page_remove",
            "tdh_phymem_page_wbinvd", "tdh_vp_flush", "tdh_mng_vpflushdone",
            "tdh_phymem_cache_wb", "tdh_mng_key_freeid", "tdh_phymem_page_reclaim"} <= sites


def test_two_packages_double_the_cache_wb_sites():
    one = leaf_calls("v6.16", "v6.16", {"packages": 1, "cache_wb_rounds": 1})
    two = leaf_calls("v6.16", "v6.16", {"packages": 2, "cache_wb_rounds": 3})
    assert one["tdh_phymem_cache_wb"] == 1 and two["tdh_phymem_cache_wb"] == 6  # 2 x 3 rounds


def test_the_sweep_sees_a_leak_kvm_does_not_report():
    runs = list(fault_sweep(kernels=("v6.16",), strategies=("v6.16",),
                            leaves={"tdh_phymem_page_reclaim"},
                            mutations={"reclaim-failure-unreported"}))
    assert runs and all(any(p.startswith("silent leak") for p in r.problems) for r in runs)
