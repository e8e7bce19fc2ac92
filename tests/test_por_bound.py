"""bench/por_bound.py measures how far a partial-order reduction could go (Godefroid 1996,
persistent sets; independence = a diamond in the state graph). Its four relations are
checked here on worlds whose answer is known: independent writers reduce to one
interleaving, insertions of different members into one set commute for footprints kept per
member, two increments of one counter commute only for the operation-aware relation, and two
writers of one flag never commute."""

import importlib.util
from pathlib import Path

from tdxedu.sim import World
from tdxedu.sim.engine import LIVE_LIMIT, _Counter
from tdxedu.sim.reduce import state_graph
from tdxedu.trace import PREEMPT, Trace

_spec = importlib.util.spec_from_file_location(
    "por_bound", Path(__file__).parents[1] / "bench" / "por_bound.py")
por_bound = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(por_bound)


class Cells(World):
    """Two actors, each doing `n` steps of `op` on a dict of cells (every step writes)."""

    cloneable = True

    def __init__(self, op, n=3):
        self.trace = Trace()
        self.cells = {"a": 0, "b": 0, "n": 0, "s": ()}
        self.op, self.n = op, n

    def actors(self):
        def actor(name):
            for i in range(self.n):
                self.op(self.cells, name)
                if i < self.n - 1:
                    yield PREEMPT
        return {"p": actor("p"), "q": actor("q")}

    def fingerprint(self):
        return tuple(sorted(self.cells.items()))

    def conditions(self):
        return {}


def _bounds(op):
    return por_bound.bounds(state_graph(lambda: Cells(op), 50, "step", _Counter(), LIVE_LIMIT))


def test_independent_writers_reduce_to_one_interleaving():
    def own_cell(cells, name):  # p writes a, q writes b
        cells["a" if name == "p" else "b"] += 1

    b = _bounds(own_cell)
    assert b["full"][0] == 4 * 4  # a 4x4 grid of step counts
    for name in por_bound.RELATIONS:
        states, edges, _ = b[name]
        assert edges == states - 1 == 2 * 3  # one path of 3 + 3 steps


def test_increments_of_one_counter_commute_only_operation_aware():
    def shared_counter(cells, name):
        cells["n"] += 1

    b = _bounds(shared_counter)
    assert b["oracle"][1] == b["oracle"][0] - 1  # one path
    assert b["commuting"] == b["oracle"]
    # both write "n": a read/write footprint sees a conflict, however fine
    assert b["disjoint"] == b["keyed"] == b["full"]


def test_inserts_of_different_members_commute_per_member():
    def own_member(cells, name):  # each actor adds its next member to one shared set
        k = sum(1 for m in cells["s"] if m[0] == name)
        cells["s"] = tuple(sorted((*cells["s"], (name, k))))

    b = _bounds(own_member)
    assert b["oracle"][1] == b["oracle"][0] - 1  # one path
    assert b["keyed"] == b["commuting"] == b["oracle"]
    assert b["disjoint"] == b["full"]  # one collection, written by both


def test_writers_of_one_flag_never_commute():
    def last_writer_wins(cells, name):
        cells["n"] = 1 if name == "p" else 2

    b = _bounds(last_writer_wins)
    assert b["oracle"] == b["disjoint"] == b["keyed"] == b["commuting"] == b["full"]
