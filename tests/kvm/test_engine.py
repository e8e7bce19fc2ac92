"""The scheduler and explorer on toy worlds whose answers are known."""

import pytest

from tdxedu.sim import World, explore, run_script, run_seeded
from tdxedu.trace import PREEMPT, Trace, WaitUntil


class LostUpdate(World):
    def __init__(self):
        self.trace, self.x = Trace(), 0

    def inc(self):
        v = self.x
        yield PREEMPT
        self.x = v + 1

    def actors(self):
        return {"a": self.inc(), "b": self.inc()}

    def fingerprint(self):
        return self.x

    def conditions(self):
        return {"lost_update": self.x == 1}


class Deadlock(World):
    def __init__(self):
        self.trace, self.l1, self.l2 = Trace(), None, None

    def t(self, me, first, second):
        while getattr(self, first) is not None:
            yield WaitUntil(lambda: getattr(self, first) is None, first)
        setattr(self, first, me)
        yield PREEMPT
        while getattr(self, second) is not None:
            yield WaitUntil(lambda: getattr(self, second) is None, second)
        setattr(self, second, me)
        setattr(self, second, None)
        setattr(self, first, None)

    def actors(self):
        return {"a": self.t("a", "l1", "l2"), "b": self.t("b", "l2", "l1")}

    def fingerprint(self):
        return (self.l1, self.l2)


def test_lost_update_is_sometimes():
    ex = explore(LostUpdate)
    assert ex.verdict("lost_update") == "sometimes"
    assert ex.witness("lost_update").choices[:2] in (["a", "b"], ["b", "a"])


def test_lock_order_inversion_sometimes_deadlocks():
    ex = explore(Deadlock)
    assert ex.verdict("deadlock") == "sometimes"
    assert ex.verdict("completed") == "sometimes"


def test_step_bound_and_exceptions_are_outcomes():
    class Spin(World):
        def __init__(self):
            self.trace = Trace()

        def actors(self):
            def spin():
                while True:
                    yield PREEMPT

            def crash():
                yield PREEMPT
                raise KeyError("model bug")

            return {"spin": spin(), "crash": crash()}

    ex = explore(Spin, max_steps=5)
    assert ex.verdict("exception") == "sometimes" and ex.verdict("step_bound") == "sometimes"
    assert "KeyError" in ex.witness("exception").error


def test_script_rejects_an_actor_that_cannot_run():
    with pytest.raises(ValueError, match="cannot run now"):
        run_script(Deadlock, ["a", "b", "a", "a"])


def test_seeded_runs_repeat():
    assert run_seeded(LostUpdate, 3).choices == run_seeded(LostUpdate, 3).choices
