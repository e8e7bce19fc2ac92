"""Every interleaving of the root scenarios (tdxedu.sim.explore) against the invariants of
`tdxedu.kvm.tdp_mmu_invariants`, on every policy; broken variants break the invariant they
name, at a step the test reports."""

import pytest

from tdxedu.kvm.mmu_role import BROKEN_POLICIES, POLICIES
from tdxedu.scenarios.registry import load_all
from tdxedu.scenarios.roots import (
    last_put_race_world,
    memslot_update_world,
    smm_storm_world,
    vm_destroy_world,
)
from tdxedu.sim.engine import explore, run_script

KINDS = ["smm-storm", "memslot-update", "vm-destroy", "last-put-race"]


def test_scenarios_are_registered_for_every_policy():
    names = set(load_all())
    for pol in POLICIES:
        for kind in KINDS:
            assert f"roots-{kind}-{pol}" in names
    assert {"roots-memslot-update-td-v6.16", "roots-vm-destroy-td-v6.16"} <= names


def _registered():
    return sorted(n for n in load_all() if n.startswith("roots-"))


@pytest.mark.parametrize("name", _registered())
def test_every_interleaving_keeps_every_invariant(name):
    """ inv1–inv13 after every step of every interleaving the explorer finds."""
    sc = load_all()[name]
    e = explore(sc.build, name=name, max_steps=sc.max_steps)
    assert e.complete and e.executions >= 1
    assert set(e.outcomes) == {"completed"}, (dict(e.outcomes), e.witness(
        next(o for o in e.outcomes if o != "completed")).violations)
    if "vm-destroy" in name:  # inv13: destruction frees every root, tdp_mmu_pages back to 0
        assert e.verdict("all_roots_freed") == "always"
        assert e.verdict("tdp_mmu_pages_zero") == "always"


@pytest.mark.parametrize("policy", list(POLICIES))
def test_smm_round_trip_reallocates_roots_only_on_v63(policy):
    """[SC-Apr23-diag], [SC-preserve]: up to v6.3 the last vCPU reference frees the root, so every
    SMI/RSM
    reallocates; from v6.4 the TDP MMU's reference keeps it."""
    e = explore(lambda: smm_storm_world(policy, 1, 1), max_steps=300)
    assert e.verdict("root_reallocated") == ("always" if policy == "v6.3" else "never")


@pytest.mark.parametrize("policy", list(POLICIES))
def test_last_put_under_read_lock(policy):
    """[OVH22] (v6.3 kvm_tdp_mmu_put_root comment): a reader's last put under the read lock
    resurrects the root and queues the zap; fast zap still returns with it zapped (inv9 holds
    in every interleaving). v6.4+: the TDP MMU's reference makes that put never the last."""
    e = explore(lambda: last_put_race_world(policy, 2), max_steps=300)
    assert set(e.outcomes) == {"completed"}
    want = "sometimes" if policy == "v6.3" else "never"
    assert e.verdict("resurrected_under_read_lock") == want
    if policy == "v6.3":
        w = e.witness("resurrected_under_read_lock")
        assert "kvm_tdp_root_mark_invalid" in w.trace.ops()


def test_invalid_root_can_outlive_the_memslot_update():
    """[ASYNC-RM]: invalid roots must be zapped before the update completes, but a vCPU
    reference can keep the empty root alive past it."""
    e = explore(lambda: memslot_update_world("v6.6", 2, 2), max_steps=300)
    assert e.verdict("invalid_root_outlived_fast_zap") == "sometimes"


def test_td_memslot_update_keeps_the_mirror_root():
    """[YZ-zapquirk], [RE-P2]: for a TD a memslot deletion zaps leaves only; no root is ever
    invalidated."""
    e = explore(lambda: memslot_update_world("v6.16", 2, 2, td=True), max_steps=300)
    assert set(e.outcomes) == {"completed"}
    assert e.verdict("invalid_root_outlived_fast_zap") == "never"


BROKEN_CASES = {
    "broken-free-valid-root": lambda: smm_storm_world("broken-free-valid-root", 1, 1),
    "broken-get-unconditional": lambda: last_put_race_world("broken-get-unconditional", 2),
    "broken-resurrect-no-zap": lambda: last_put_race_world("broken-resurrect-no-zap", 1),
    "broken-fast-zap-mirror": lambda: memslot_update_world("broken-fast-zap-mirror", 1, 1,
                                                           td=True),
    "broken-invalidate-no-request": lambda: memslot_update_world(
        "broken-invalidate-no-request", 1, 2),
}


def test_every_broken_variant_has_a_case():
    assert set(BROKEN_CASES) == set(BROKEN_POLICIES)


@pytest.mark.parametrize("name", sorted(BROKEN_CASES))
def test_broken_variant_violates_its_named_invariant(name):
    """Each mutant is caught by the invariant it names; the shortest witness shows the step."""
    e = explore(BROKEN_CASES[name], name=name, max_steps=300)
    assert e.verdict("invariant_violated") in ("sometimes", "always")
    w = e.witness("invariant_violated")
    tag = BROKEN_POLICIES[name].broken
    assert any(v.startswith(tag + ":") for v in w.violations), w.violations
    # replaying the witness's choices reproduces the same violation at the same step
    r = run_script(BROKEN_CASES[name], w.choices, max_steps=300)
    assert r.outcome == "invariant_violated" and r.steps == w.steps
    print(f"{name}: {tag} at step {w.steps} after {w.choices}: {w.violations[0]}")


def test_broken_variant_steps():
    """Where each mutant fails (shortest witness, steps counted from the start)."""
    steps = {}
    for name, build in BROKEN_CASES.items():
        w = explore(build, max_steps=300).witness("invariant_violated")
        steps[name] = (w.steps, w.choices[-1])
    # a vCPU's SMI unload frees its still-valid root at once (its 3rd step)
    assert steps["broken-free-valid-root"] == (3, "vcpu0")
    # the second reader's get lands in the first reader's count-0 window
    assert steps["broken-get-unconditional"][1] == "reader1"
    # the mirror root is invalidated by the memslot update's fast zap
    assert steps["broken-fast-zap-mirror"][1] == "memslot"
    assert steps["broken-invalidate-no-request"][1] == "memslot"


@pytest.mark.parametrize("policy", ["v6.3", "broken-resurrect-no-zap"])
def test_resurrect_must_queue_the_zap(policy):
    """Paolo's v6.3 comment ([OVH22]): queueing the zap at resurrection is required because
    invalidate-all skips invalid roots, else fast zap "might return with some roots not zapped
    yet". With step checks off (so runs go on past the inv4 violation), the explorer finds that
    outcome only for the mutant."""
    e = explore(lambda: last_put_race_world(policy, 1), max_steps=300, check="end")
    if policy == "v6.3":
        assert e.verdict("fast_zap_left_sptes") == "never"
        assert e.verdict("resurrected_under_read_lock") == "sometimes"
    else:
        assert e.verdict("fast_zap_left_sptes") == "sometimes"
        build = e.build
        w = run_script(build, e.verdicts["fast_zap_left_sptes"].witness, max_steps=300,
                       check="end")
        assert any(v.startswith("inv9:") for v in w.violations), w.violations
        assert any(v.startswith("inv13:") for v in w.violations) or not w.conditions.get(
            "all_roots_freed")


@pytest.mark.slow
def test_vm_destroy_with_both_vcpus_in_smm_v63():
    """A larger v6.3 destruction (both vCPUs leave dead roots queued) still frees everything."""
    e = explore(lambda: vm_destroy_world("v6.3", 2, 2), max_steps=400)
    assert set(e.outcomes) == {"completed"}
    assert e.verdict("all_roots_freed") == "always"
