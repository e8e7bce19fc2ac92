"""The explorer's reduction (state keys without finished actors' step counts, final states by
outcome and model state, run length only when max_steps can bind) against plain enumeration
on every registered scenario: same verdicts, witnesses as short and really replayable.

Plain enumeration is breadth first over a tree that grows exponentially, so it is run only
on the scenarios where it is cheap; every other scenario is checked against seeded runs.

The stutter reduction (`reduction="stutter"`, tdxedu/sim/reduce.py: a step that changes
neither the world nor its actor's frames is a loop, and the runs of at most `max_steps` steps
are read off the state graph) is checked against the merging alone on every scenario: the same
executions, outcomes, verdicts, run counts and witness and counterexample lengths."""

import pytest

from tdxedu.scenarios.registry import load_all
from tdxedu.sim import explore, run_seeded

#: unreduced enumeration finishes in well under a second on these
CHEAP = {"busy-accept-kick-retry-once", "busy-accept-no-retry", "busy-zero-step-kick-retry-once",
         "busy-zero-step-no-retry", "hkid-release-flush-at-vcpu-free", "hkid-release-v6.16",
         "hkid-release-terminate-vm", "hkid-release-v19-notifier", "mutant-dpamt-fault",
         "mutant-hkid-release", "mutant-migration", "mutant-pamt-get-put",
         "mutant-roots-last-put-race", "mutant-roots-smm-storm", "mutant-teardown",
         "mutant-teardown-dpamt", "mutant-zap-accept", "mutant-zap-running",
         "mutant-zap-zero-step", "pamt-get-put", "pamt-get-put-module-hint",
         "pamt-get-put-no-pamt-lock", "roots-last-put-race-v6.16", "roots-last-put-race-v6.6",
         "roots-smm-storm-v6.16", "roots-smm-storm-v6.4", "roots-smm-storm-v6.6"}
SEEDS = 12


@pytest.mark.parametrize("name", sorted(load_all()))
def test_reduction_keeps_verdicts_and_shortest_witnesses(name):
    sc = load_all()[name]
    red = explore(sc.build, name=name, max_steps=sc.max_steps)
    assert red.complete
    if name in CHEAP:
        full = explore(sc.build, name=name, max_steps=sc.max_steps, prune=False)
        assert full.complete
        for c, v in full.verdicts.items():
            r = red.verdicts[c]
            assert r.verdict == v.verdict, c
            for mine, theirs in ((r.witness, v.witness), (r.counterexample, v.counterexample)):
                assert (mine is None) == (theirs is None), c
                assert mine is None or len(mine) == len(theirs), c
    else:  # every value a random run shows, the reduced exploration shows too
        for seed in range(SEEDS):
            run = run_seeded(sc.build, seed, max_steps=sc.max_steps)
            for c, val in run.conditions.items():
                r = red.verdicts[c]
                assert (r.true_runs > 0) if val else (r.true_runs < r.runs), (seed, c)
    for c, r in red.verdicts.items():
        if r.witness is not None:
            w = red.witness(c)
            assert w.choices == r.witness and w.conditions[c], c
        if r.counterexample is not None:
            assert not red.counterexample(c).conditions[c], c


def _lengths(e):
    return {c: (v.verdict, v.true_runs, v.runs,
                None if v.witness is None else len(v.witness),
                None if v.counterexample is None else len(v.counterexample))
            for c, v in e.verdicts.items()}


@pytest.mark.parametrize("name", sorted(load_all()))
def test_stutter_reduction_keeps_verdicts_and_shortest_witnesses(name):
    sc = load_all()[name]
    merged = explore(sc.build, name=name, max_steps=sc.max_steps, reduction="merge")
    red = explore(sc.build, name=name, max_steps=sc.max_steps, reduction="stutter")
    assert red.complete and red.reduction == "stutter"
    assert red.executions == merged.executions and red.outcomes == merged.outcomes
    assert _lengths(red) == _lengths(merged)
    assert red.steps <= merged.steps
    for c, r in red.verdicts.items():
        if r.witness is not None:
            w = red.witness(c)
            assert w.choices == r.witness and w.conditions[c], c
        if r.counterexample is not None:
            assert not red.counterexample(c).conditions[c], c


def test_unknown_reduction_is_a_clear_error():
    sc = load_all()["hkid-release-v6.16"]
    with pytest.raises(ValueError, match="unknown reduction 'sleep'; choose one of none, merge"):
        explore(sc.build, reduction="sleep")
