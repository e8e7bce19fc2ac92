"""The bulk (numpy) engine agrees exactly with the step engine: per-leaf SEAMCALL counts, kicks,
pages cleared, final PAMT (type and owner of every page), S-EPT entry states, leaked pages
(address and reason, in order), KVM_BUG_ONs, HKID state, host pages in use — for every
teardown strategy (`tdxedu.kvm.teardown`, [K616]), on seeded random TDs, with and without the
stale-association fault that makes VPFLUSHDONE fail ([M15] `tdh_mng_vpflushdone.c`)."""

import random
from collections import Counter

import pytest
from cost_compare import (
    bulk_pamt_matches,
    bulk_sept_state,
    compare_all,
    make_stale,
    pamt_state,
    sept_state,
)

from tdxedu.cost.bulk import BulkTd
from tdxedu.cost.counts import teardown_counts
from tdxedu.kvm.tdx import TEARDOWN_POLICIES
from tdxedu.scenarios import RunningTd
from tdxedu.tdx.pamt import PageType


def _configs(seed: int, n: int, max_pages: int):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pages = rng.choice([1, 2, 511, 512, 513, 1024, rng.randint(1, max_pages)])
        vcpus = rng.randint(1, 6)
        packages = rng.randint(1, 3)
        stale = rng.choice([0, 0, rng.randint(1, vcpus)])
        out.append((pages, vcpus, packages, stale, rng.choice([True, False])))
    return out


def run_both(pages, vcpus, strategy, packages=1, stale=0, clear=True, trace=False):
    step = RunningTd(memory=pages * 4096, vcpus=vcpus, packages=packages, clear_pages=clear,
                     trace=trace)
    make_stale(step, stale)
    bulk = BulkTd(pages, vcpus, packages=packages, clear_pages=clear, stale_vcpus=stale)
    before = (bulk_pamt_matches(bulk, pamt_state(step)),
              sept_state(step) == bulk_sept_state(bulk))
    return step, step.teardown(strategy), bulk, bulk.teardown(strategy), before


@pytest.mark.parametrize("strategy", TEARDOWN_POLICIES)
@pytest.mark.parametrize("case", _configs(seed=6, n=6, max_pages=1100))
def test_bulk_equals_step_on_random_tds(strategy, case):
    pages, vcpus, packages, stale, clear = case
    step, sr, bulk, br, (pamt_before, sept_before) = run_both(
        pages, vcpus, strategy, packages, stale, clear)
    assert pamt_before == [] and sept_before, "the built TDs differ before teardown"
    assert compare_all(step, sr, bulk, br) == []
    assert sr.ok == br.ok == (stale == 0)


@pytest.mark.parametrize("strategy", TEARDOWN_POLICIES)
def test_leak_accounting_matches_when_hkid_release_fails(strategy):
    """VPFLUSHDONE -> TDX_FLUSHVP_NOT_DONE: the HKID stays assigned and every vCPU, S-EPT and
    control page leaks, each with its reason ([K616] `tdx_vcpu_free`, `tdx_vm_destroy`)."""
    step, sr, bulk, br, _ = run_both(700, 3, strategy, packages=2, stale=1)
    assert compare_all(step, sr, bulk, br) == []
    assert br.hkid_state == "leaked (still assigned)"
    sept = 2 + 1 + 1  # two level-1 tables, one level-2, one level-3
    assert br.n_leaked == 3 * 6 + sept + 6 + 1
    assert Counter(why for _, why in sr.leaked_pages) == Counter(
        {"vCPU page: HKID still assigned": 18, "S-EPT page: HKID still assigned": sept,
         "control page: HKID still assigned": 7})
    # The leaked pages are still the module's: PAMT keeps their types, the TD survives.
    types = Counter(PageType(int(bulk.pamt_pt[pa >> 12])).name for pa, _ in br.leaked_pages())
    assert types == {"PT_TDCX": 3 * 5 + 6, "PT_TDVPR": 3, "PT_EPT": sept, "PT_TDR": 1}
    assert bulk.td_alive and bulk.chldcnt == br.n_leaked - 1
    # terminate-vm tries the release twice (the ioctl, then vm_pre_destroy): VPFLUSHDONE x2
    assert br.counts["tdh_mng_vpflushdone"] == (2 if strategy == "terminate-vm" else 1)


def test_kicks_equal_the_step_engines_kvm_make_all_cpus_request_events():
    for strategy in TEARDOWN_POLICIES:
        step, sr, bulk, br, _ = run_both(600, 3, strategy, trace=True)
        kicks = sum(1 for e in sr.trace if e.op == "kvm_make_all_cpus_request")
        assert kicks == br.kicks
        assert kicks == (600 if strategy in ("v6.16", "flush-at-vcpu-free") else 0)


@pytest.mark.parametrize("strategy", ["v6.16", "terminate-vm"])
def test_bulk_equals_step_at_32_mib(strategy):
    step, sr, bulk, br, _ = run_both(8192, 4, strategy, packages=2)
    assert compare_all(step, sr, bulk, br) == []


@pytest.mark.slow
@pytest.mark.parametrize("strategy", TEARDOWN_POLICIES)
def test_bulk_equals_step_at_256_mib(strategy):
    step, sr, bulk, br, _ = run_both(65536, 8, strategy, packages=2, stale=0)
    assert compare_all(step, sr, bulk, br) == []


@pytest.mark.slow
def test_bulk_equals_step_across_a_1_gib_boundary():
    """1 GiB + 4 KiB: the second level-2 S-EPT page lands mid-memory (layout check)."""
    step, sr, bulk, br, (pamt_before, sept_before) = run_both((1 << 18) + 1, 2, "terminate-vm")
    assert pamt_before == [] and sept_before
    assert compare_all(step, sr, bulk, br) == []


@pytest.mark.parametrize("pages,vcpus,packages", [
    (1, 1, 1), (513, 3, 2), ((1 << 18) + 1, 7, 3),
    pytest.param((1 << 27) + 512, 64, 2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("strategy", TEARDOWN_POLICIES)
def test_closed_form_counts_equal_bulk_engine(pages, vcpus, packages, strategy):
    """The closed-form counts (`tdxedu.cost.counts`, used by the cost sweep) == the bulk engine,
    including a
    TD past 512 GiB (a second level-3 S-EPT page)."""
    if pages > 1 << 20 and strategy not in ("v6.16", "terminate-vm"):
        pytest.skip("one big TD per flow family is enough")
    w = teardown_counts(pages, vcpus, strategy, packages=packages)
    br = BulkTd(pages, vcpus, packages=packages).teardown(strategy)
    assert (w.counts, w.kicks, w.cleared) == (br.counts, br.kicks, br.cleared_pages)
    assert br.ok and br.n_leaked == 0


def test_bulk_refuses_a_second_teardown_and_unknown_strategy():
    td = BulkTd(4, 1)
    with pytest.raises(ValueError, match="v6.16, terminate-vm"):
        td.teardown("fast")
    td.teardown()
    with pytest.raises(ValueError, match="already been torn down"):
        td.teardown()
