"""Explorer verdicts for the Dynamic PAMT scenarios ([V2-CL], [V6-05]): with `pamt_lock`
two CPUs getting and putting one 2 MB range never lose or leak a pair; without the lock, or
trusting the module's removal hint, they sometimes lose it (shortest witness shown)."""

from __future__ import annotations

from tdxedu.scenarios.registry import get, load_all
from tdxedu.sim.engine import explore


def run(name):
    sc = get(name)
    return explore(sc.build, name=name, max_steps=sc.max_steps)


def test_scenarios_registered():
    names = [n for n in load_all() if n.startswith("pamt-")]
    assert sorted(names) == ["pamt-get-put", "pamt-get-put-module-hint",
                             "pamt-get-put-no-pamt-lock"]


def test_pamt_lock_never_loses_or_leaks():
    """[V6-05]/[V6-06]: one global lock around read-decide-SEAMCALL-update, fast paths only
    for !=0 counts: no lost pair, no leaked pair, no BUSY, no failed get, refcounts 0."""
    e = run("pamt-get-put")
    assert e.complete and e.executions + e.pruned > 5  # many interleavings, merged
    for c in ("pair_lost", "pair_leaked", "busy", "get_failed", "refcount_nonzero",
              "invariant_violated", "exception"):
        assert e.verdict(c) == "never", c
    assert e.verdict("completed") == "always"


def test_without_pamt_lock_sometimes_loses_the_pair():
    """[V3-CL], [M20-PAMT-ADD]: without the kernel's lock two ADD/REMOVE on one range race in the
    module
    (BUSY), and a get that reads HPA_RANGE_NOT_FREE as "already added" loses the pair."""
    e = run("pamt-get-put-no-pamt-lock")
    assert e.complete
    assert e.verdict("pair_lost") == "sometimes"
    assert e.verdict("busy") == "sometimes"
    w = e.witness("pair_lost")
    ops = [ev.op for ev in w.trace if ev.op.startswith("tdh_phymem_pamt")]
    assert ops[:3] == ["tdh_phymem_pamt_add", "tdh_phymem_pamt_add", "tdh_phymem_pamt_remove"]


def test_module_hint_design_has_the_race_of_2_5():
    """[V2-CL]: CPU0's ADD succeeds, CPU1's ADD finds the pair there; CPU0 removes its page,
    gets the count-0 hint and removes the pair; CPU1 then uses a page in an uncovered range."""
    e = run("pamt-get-put-module-hint")
    assert e.complete and e.verdict("pair_lost") == "sometimes"
    w = e.witness("pair_lost")
    seq = [(ev.actor, ev.op, ev.status) for ev in w.trace if ev.op.startswith("tdh_")]
    assert seq[0][1:] == ("tdh_phymem_pamt_add", "TDX_SUCCESS")
    assert seq[1][1] == "tdh_phymem_pamt_add" and "HPA_RANGE_NOT_FREE" in seq[1][2]
    assert seq[2][1:] == ("tdh_phymem_pamt_remove", "TDX_SUCCESS")
    assert seq[0][0] == seq[2][0] != seq[1][0]
