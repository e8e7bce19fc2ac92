"""The explorer's reduction (state keys without finished actors' step counts, final states by
outcome and model state, run length only when max_steps can bind) against plain enumeration
on every registered scenario: same verdicts, witnesses as short and really replayable."""

import pytest

from tdxedu.sim import explore
from tdxedu.sim.registry import load_all

CAP = 1500  # unreduced executions per scenario: the big ones are checked on a prefix


@pytest.mark.parametrize("name", sorted(load_all()))
def test_reduction_keeps_verdicts_and_shortest_witnesses(name):
    sc = load_all()[name]
    red = explore(sc.build, name=name, max_steps=sc.max_steps)
    full = explore(sc.build, name=name, max_steps=sc.max_steps, prune=False,
                   max_executions=CAP)
    assert red.complete
    for c, v in full.verdicts.items():
        r = red.verdicts[c]
        if full.complete:
            assert r.verdict == v.verdict, c
            for mine, theirs in ((r.witness, v.witness), (r.counterexample, v.counterexample)):
                assert (mine is None) == (theirs is None), c
                assert mine is None or len(mine) == len(theirs), c
        else:  # every value the capped enumeration saw, the reduced exploration saw too
            assert v.true_runs == 0 or r.true_runs > 0, c
            assert v.true_runs == v.runs or r.true_runs < r.runs, c
    for c, r in red.verdicts.items():
        if r.witness is not None:
            w = red.witness(c)
            assert w.choices == r.witness and w.conditions[c], c
        if r.counterexample is not None:
            assert not red.counterexample(c).conditions[c], c
