"""The SMM-reset storm of the 2023 report ([JP-HV], [SC-Apr23-diag], [SC-Apr23], [SC-preserve]):
every SMI and
RSM resets the MMU context (kvm_smm_changed → kvm_mmu_reset_context → kvm_mmu_unload)."""

import pytest

from tdxedu.kvm.mmu_role import MAX_DIRECT_ROLES, POLICIES
from tdxedu.scenarios.roots import smm_storm

LATER = [p for p in POLICIES if p != "v6.3"]


@pytest.mark.parametrize("n_vcpus", [1, 2, 3, 4])
def test_v63_allocates_roots_in_proportion_to_cycles(n_vcpus):
    """Up to v6.3 the last vCPU reference frees the root ([OVH22]), so each SMI and each RSM
    allocates a root again: allocations grow linearly with N. The vCPUs take turns (each does
    SMI, run, RSM, run), so with one vCPU both its roots die every cycle (2 per cycle); with
    more, the non-SMM root is kept alive by the others but every vCPU's SMM root dies at its
    RSM (n_vcpus per cycle)."""
    counts = {n: smm_storm("v6.3", n, n_vcpus)["root_allocations"] for n in (100, 200, 400)}
    slope1 = (counts[200] - counts[100]) / 100
    slope2 = (counts[400] - counts[200]) / 200
    assert slope1 == slope2 == max(2, n_vcpus)


@pytest.mark.parametrize("policy", LATER)
@pytest.mark.parametrize("n_vcpus", [1, 2, 3, 4])
def test_v64_and_later_allocate_each_role_once(policy, n_vcpus):
    """[SC-preserve]: the TDP MMU keeps every root until it is explicitly invalidated, so N cycles
    allocate no more roots than there are distinct roles (<= 6)."""
    r = smm_storm(policy, 300, n_vcpus, check_every=50)
    assert r["violations"] == []
    assert r["root_allocations"] == r["distinct_live_roles"] == 2  # {!SMM, SMM}, 4-level
    assert r["root_allocations"] <= MAX_DIRECT_ROLES
    assert r["roots_freed"] == 0 and not r["kvm_bugged"]
    # and the page tables are built once, not rebuilt after every transition
    assert r["page_table_pages_allocated"] == 2 * 3


def test_v63_storm_keeps_the_invariants():
    r = smm_storm("v6.3", 200, 2, check_every=10)
    assert r["violations"] == [] and r["roots_freed"] == r["root_allocations"] - r["live_roots"]


def test_ratio_grows_with_n():
    """The v6.3/v6.4 ratio is the 2023 "100k vs 15" story in miniature: it grows without bound."""
    small = smm_storm("v6.3", 100, 1)["root_allocations"] / smm_storm("v6.4", 100, 1)[
        "root_allocations"]
    big = smm_storm("v6.3", 1000, 1)["root_allocations"] / smm_storm("v6.4", 1000, 1)[
        "root_allocations"]
    assert big > 9 * small


def test_bad_input():
    with pytest.raises(ValueError, match="allowed"):
        smm_storm("v6.2", 10, 1)
    with pytest.raises(ValueError, match="n_vcpus"):
        smm_storm("v6.4", 10, 5)
    with pytest.raises(TypeError, match="n_vcpus"):
        smm_storm("v6.4", 10, 1.5)
    with pytest.raises(ValueError, match="n_cycles"):
        smm_storm("v6.4", -1, 1)
    with pytest.raises(ValueError, match="no SMM"):
        smm_storm("v6.16", 10, 1, td=True)
