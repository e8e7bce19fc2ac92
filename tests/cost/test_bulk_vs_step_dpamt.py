"""Dynamic PAMT in the bulk engine and the closed-form counts: on a DPAMT host ([V6-CL],
"vcpu-cache" policy) the bulk engine lays pages out exactly as the step engine does (PAMT
pairs and vCPU 0's PAMT cache shift every page, `tdxedu.cost.dpamt`), issues the same
TDH.PHYMEM.PAMT.ADDs at build and PAMT.REMOVEs at teardown ([V6-06] `tdx_pamt_put`: only
the last put of a 2 MB range), and keeps the pairs of ranges whose pages leaked."""

import random

import numpy as np
import pytest
from cost_compare import compare_all, make_stale

from tdxedu.cost.bulk import TDCS_PAGES, TDCX_PER_VCPU, BulkTd
from tdxedu.cost.counts import teardown_counts, workload
from tdxedu.cost.dpamt import DpamtLayout, k_inverse, k_of
from tdxedu.kvm.tdx import TEARDOWN_POLICIES
from tdxedu.scenarios import RunningTd


def run_both(pages, vcpus, strategy, packages=1, stale=0, clear=True):
    step = RunningTd(memory=pages * 4096, vcpus=vcpus, packages=packages, clear_pages=clear,
                     dynamic_pamt=True, trace=False)
    make_stale(step, stale)
    build = {k: v for k, v in step.host.module.counts.items() if "pamt" in k}
    bulk = BulkTd(pages, vcpus, packages=packages, clear_pages=clear, stale_vcpus=stale,
                  dynamic_pamt=True)
    return step, step.teardown(strategy), bulk, bulk.teardown(strategy), build


def _configs(seed, n):
    rng = random.Random(seed)
    return [(rng.choice([1, 511, 512, 513, rng.randint(1, 3000)]), rng.randint(1, 5),
             rng.randint(1, 2), rng.choice([0, 0, 1]), rng.choice([True, False]))
            for _ in range(n)]


@pytest.mark.parametrize("strategy", TEARDOWN_POLICIES)
@pytest.mark.parametrize("case", _configs(seed=16, n=5))
def test_bulk_equals_step_on_a_dpamt_host(strategy, case):
    pages, vcpus, packages, stale, clear = case
    step, sr, bulk, br, build = run_both(pages, vcpus, strategy, packages, stale, clear)
    assert compare_all(step, sr, bulk, br) == []  # counts incl. PAMT.REMOVE, leaks, PAMT
    assert br.build_counts == build
    assert br.pamt_pairs == sr.pamt_pairs
    assert br.ok == sr.ok == (stale == 0)
    if stale == 0:
        assert br.counts["tdh_phymem_pamt_remove"] == build["tdh_phymem_pamt_add"]


def test_layout_is_the_step_engines_allocation_order():
    """Every control, S-EPT and guest page at the frame the step engine's allocator gave it."""
    for pages, vcpus in [(1, 1), (513, 3), (2000, 4), (20000, 2)]:
        step = RunningTd(memory=pages * 4096, vcpus=vcpus, dynamic_pamt=True, trace=False)
        kt, lay = step.kt, DpamtLayout(pages, vcpus, TDCS_PAGES, TDCX_PER_VCPU)
        assert kt.tdr_pa >> 12 == lay.tdr_pfn
        assert [pa >> 12 for pa in kt.tdcs_pa] == list(lay.tdcs_pfns)
        for v, frames in zip(step.kvm.vcpus, lay.vcpu_frames, strict=True):
            vt = v.arch.tdx
            assert [vt.tdvpr_pa >> 12, *(pa >> 12 for pa in vt.tdcx_pa)] == list(frames)
        want = np.array([kt.gmem[i * 4096] >> 12 for i in range(pages)])
        assert (lay.guest_pfns(0, pages) == want).all()
        bulk = BulkTd(pages, vcpus, dynamic_pamt=True)
        for level in (1, 2, 3):
            keys = sorted(k for k in kt.sept_pages if k[0] == level)
            assert list(bulk.table_pfns(level)) == [kt.sept_pages[k] >> 12 for k in keys]
        assert lay.end_pfn == (max(step.host.allocator.allocated) >> 12) + 1
        cache = sorted(pa >> 12 for pa, what in step.host.allocator.allocated.items()
                       if what == "pamt_cache" and pa >> 12 >= lay.m0)
        pairs = sorted(pa >> 12 for pa, what in step.host.allocator.allocated.items()
                       if what in ("pamt_cache", "DPAMT") and pa >> 12 >= lay.m0)
        assert sorted(lay.gap_frames()) == pairs == cache  # the pairs were cache pages


def test_k_inverse_is_exact_up_to_past_1_tib():
    x = np.array([0, 1, 3, 4, 515, 516, 1 << 20, (1 << 28) + 12345, 1 << 30])
    t = k_inverse(x)
    assert (k_of(t) >= x).all()
    assert ((t == 0) | (k_of(np.maximum(t - 1, 0)) < x)).all()


@pytest.mark.parametrize("pages,vcpus,packages", [(1, 1, 1), (513, 3, 2), ((1 << 18) + 1, 7, 3)])
@pytest.mark.parametrize("strategy", ["v6.16", "terminate-vm"])
def test_closed_form_dpamt_counts_equal_the_bulk_engine(pages, vcpus, packages, strategy):
    w = teardown_counts(pages, vcpus, strategy, packages=packages, dynamic_pamt=True)
    br = BulkTd(pages, vcpus, packages=packages, dynamic_pamt=True).teardown(strategy)
    assert (w.counts, w.kicks, w.cleared, w.build_counts) == (
        br.counts, br.kicks, br.cleared_pages, br.build_counts)
    static = teardown_counts(pages, vcpus, strategy, packages=packages)
    assert {k: v for k, v in w.counts.items() if k != "tdh_phymem_pamt_remove"} == static.counts


def test_leaked_pages_keep_their_ranges_pairs():
    """HKID release fails: every range holding a leaked vCPU, S-EPT or control page keeps its
    reference and its pair; the workload prices only the puts that happened."""
    w = workload(3000, 2, "v6.16", stale_vcpus=1, dynamic_pamt=True)
    br = BulkTd(3000, 2, stale_vcpus=1, dynamic_pamt=True).teardown("v6.16")
    assert "tdh_phymem_pamt_remove" not in w.counts  # every range holds an S-EPT page here
    assert br.pamt_pairs == w.build_counts["tdh_phymem_pamt_add"]
    assert w.pamt_puts == 3000  # the guest pages, removed at runtime
    assert br.host_pages_in_use == br.n_leaked + 2 * br.pamt_pairs


@pytest.mark.slow
def test_a_range_without_leaked_pages_is_removed_even_when_the_hkid_leaks():
    """100k pages: about one 2 MB range in 170 holds no S-EPT page; after a failed HKID
    release exactly those get their PAMT.REMOVE, in both engines."""
    step, sr, bulk, br, build = run_both(100000, 2, "terminate-vm", stale=1)
    assert compare_all(step, sr, bulk, br) == []
    assert br.counts["tdh_phymem_pamt_remove"] == sr.counts["tdh_phymem_pamt_remove"] >= 1
    assert br.pamt_pairs == sr.pamt_pairs
