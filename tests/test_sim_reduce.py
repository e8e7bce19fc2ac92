"""The explorer's stutter reduction (tdxedu/sim/reduce.py) on small hand-written worlds: a step
is a loop only when neither the world nor the actor's own frames changed; a count kept in a
local variable, a list changed in place, a result object with other fields all count as
changes. Runs cut short by `max_steps` are read off the graph as the merging executes them."""

from tdxedu.scenarios.registry import get
from tdxedu.sim import World, explore
from tdxedu.sim.reduce import frames
from tdxedu.trace import PREEMPT, Trace, WaitUntil


class Flags(World):
    """A world whose whole state is a dict of flags."""

    cloneable = True

    def __init__(self, spec):
        self.trace = Trace()
        self.flags = {"go": False, "done": False}
        self.spec = spec

    def actors(self):
        return self.spec(self)

    def fingerprint(self):
        return tuple(sorted(self.flags.items()))

    def conditions(self):
        return dict(self.flags)


def _setter(w):
    yield PREEMPT
    w.flags["go"] = True


def _spinner_and_setter(w):
    def spinner():  # spins on a flag, changing nothing while it waits: a stutter
        while not w.flags["go"]:
            yield PREEMPT
        w.flags["done"] = True

    return {"spin": spinner(), "set": _setter(w)}


def _counter_and_setter(w):
    def counter():  # the same world each step, but a local count: never a loop
        n = 0
        while n < 3:
            n += 1
            yield PREEMPT
        w.flags["done"] = True

    return {"count": counter(), "set": _setter(w)}


def _list_in_place(w):
    def worker():  # pops from a local list: the list object stays, its contents change
        ops = ["a", "b", "c"]
        while ops:
            ops.pop(0)
            yield PREEMPT
        w.flags["done"] = True

    return {"work": worker()}


def _both(spec, max_steps):
    merged = explore(lambda: Flags(spec), max_steps=max_steps, reduction="merge")
    red = explore(lambda: Flags(spec), max_steps=max_steps, reduction="stutter")
    return merged, red


def _answers(e):
    return {c: (v.verdict, v.true_runs, v.runs,
                None if v.witness is None else len(v.witness)) for c, v in e.verdicts.items()}


def test_a_spin_is_a_loop_and_its_step_bound_runs_are_kept():
    merged, red = _both(_spinner_and_setter, 12)
    assert _answers(red) == _answers(merged)
    # the spinner can spin until the bound: both say so, with a 12-step witness
    assert red.verdict("step_bound") == "sometimes"
    assert len(red.verdicts["step_bound"].witness) == 12
    assert red.witness("step_bound").outcome == "step_bound"
    assert red.steps < merged.steps


def test_a_local_count_is_a_change():
    merged, red = _both(_counter_and_setter, 20)
    assert _answers(red) == _answers(merged)
    assert red.verdict("done") == "always" and red.verdict("step_bound") == "never"


def test_a_list_changed_in_place_is_a_change():
    merged, red = _both(_list_in_place, 20)
    assert _answers(red) == _answers(merged)
    assert red.verdict("done") == "always"
    assert len(red.verdicts["done"].witness) == 4  # three pops, then the end


def test_frames_see_locals_and_where_the_actor_stopped():
    def gen():
        x = 1
        yield PREEMPT
        x += 1
        yield x and PREEMPT
        yield PREEMPT

    g = gen()
    next(g)
    a = frames(g)
    next(g)
    b = frames(g)
    next(g)
    c = frames(g)
    assert a != b  # x changed
    assert b != c  # same x, another yield
    assert frames(g) == c


def test_waiting_actor_and_bound_on_a_registered_retry_loop():
    """The pre-merge retry loop ([Y-RFC]): the zap spins on TDX_OPERAND_BUSY while vCPU 0's
    0-step VP.ENTER holds the S-EPT tree; every retry after the watchdog's count is a loop."""
    sc = get("busy-zero-step-retry-loop")
    merged = explore(sc.build, max_steps=sc.max_steps, reduction="merge")
    red = explore(sc.build, max_steps=sc.max_steps, reduction="stutter")
    assert _answers(red) == _answers(merged)
    assert red.verdict("softlockup") == "sometimes" and red.verdict("step_bound") == "sometimes"
    assert red.steps * 20 < merged.steps


def test_a_world_without_fingerprint_falls_back_to_plain_runs():
    class Bare(Flags):
        def fingerprint(self):
            return None

    def spec(w):
        def a():
            yield WaitUntil(lambda: w.flags["go"], "go")
            w.flags["done"] = True

        def b():
            w.flags["go"] = True
            yield PREEMPT

        return {"a": a(), "b": b()}

    red = explore(lambda: Bare(spec), max_steps=10, reduction="stutter")
    assert red.complete and red.verdict("done") == "always"


def test_a_graph_past_its_state_budget_is_reported_incomplete():
    """`max_executions` bounds the graph too (ten states per execution): past it the answer
    says INCOMPLETE instead of running on."""
    sc = get("roots-memslot-update-v6.3")
    red = explore(sc.build, max_steps=sc.max_steps, max_executions=5, reduction="stutter")
    assert not red.complete and "INCOMPLETE" in red.to_text()
    assert red.steps < 2_000


def _for_loop_over_equal_items(w):
    def worker():  # the loop's iterator moves on, but it is on the frame's stack, not a local
        for op in ["run", "run", "run"]:
            assert op == "run"
            yield PREEMPT
        w.flags["done"] = True

    return {"work": worker()}


def test_a_for_loop_over_equal_items_is_a_change():
    """A frame suspended inside a `for` loop keeps its iterator where `f_locals` cannot show
    it: such a step is never taken for a loop of the state graph."""
    merged, red = _both(_for_loop_over_equal_items, 20)
    assert _answers(red) == _answers(merged)
    assert red.verdict("done") == "always" and red.verdict("step_bound") == "never"
