"""How far could a partial-order reduction go? An upper bound, read off the complete state graph.

The stutter reduction (tdxedu/sim/reduce.py) meets its target on the BUSY retry loops but
not on scenarios without loops (`roots-memslot-update-v6.3/-v6.4`, the composed HKID-release
race): there nothing stutters, and the steps left are replays of prefixes, one per branch.
A partial-order reduction would cut branches. Before building one, this script measures the
best any of them could do, given the graph the explorer builds anyway:

* *full*: states, edges and steps executed of today's exploration. Steps follow the explorer's
  own cost: a state with k branches at depth d costs k steps plus (k - 1) replays of d steps
  (generators cannot be copied), which gives exactly the steps the explorer counts.
* *oracle*: a persistent-set search (Godefroid, "Partial-Order Methods for the Verification of
  Concurrent Systems", LNCS 1032, 1996, ch. 4) where two steps are independent in a state
  when they form a diamond there: both orders are possible and end in the same state. At
  each state the smallest persistent set of actors is chosen by checking every state the other
  actors can reach. A persistent-set search keeps every end state and a run of the same
  length to it, so verdicts and shortest witnesses would be unchanged. No reduction that
  decides independence from less than the whole graph can do better.
* *disjoint*: the same, but a diamond counts only when the two steps change disjoint parts of
  the world's fingerprint. This is the most a reduction built on read/write footprints kept
  per object or collection could find: two increments of one refcount, or two readers
  taking one rwlock, commute but write the same thing.
* *keyed*: also counts a diamond where both steps add or remove *different* members of one
  set or map: the best of a read/write footprint kept per member (per page, per root, per
  job) rather than per collection.
* *commuting*: also counts a diamond where both steps add to one counter: the best of a
  footprint that knows the kind of each write (an increment commutes with an increment).

Prints figures and ratios; asserts nothing. Run with the project's venv:

    .venv/bin/python bench/por_bound.py                       # the slow scenarios
    .venv/bin/python bench/por_bound.py busy-accept-retry-loop \
        --compose "vcpus=2 pages=1 actors=run,zap"
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import deque

from tdxedu.scenarios.compose import build as compose_build
from tdxedu.scenarios.compose import parse
from tdxedu.scenarios.registry import load_all
from tdxedu.sim.engine import LIVE_LIMIT, _cloner, _Counter
from tdxedu.sim.reduce import state_graph

SLOW = ("busy-zero-step-retry-loop", "busy-accept-retry-loop",
        "roots-memslot-update-v6.3", "roots-memslot-update-v6.4")
HKID_RACE = "vcpus=3 pages=2 packages=2 actors=run,run,run,mm,close"


def _fingerprint(key):
    """The world's fingerprint inside a state key or a final key (Execution.state_key/final_key)."""
    return key[2] if key[0] == "final" else key[0]


def _changed(a, b, path=()) -> list:
    """Paths of the parts of two fingerprints that differ (tuples of equal length are
    compared element by element; anything else as one part)."""
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                out += _changed(x, y, (*path, i))
        return out
    return [path] if a != b else []


def _overlap(p: list, q: list) -> list:
    """The changed parts two steps share."""
    return [x if len(x) <= len(y) else y for x in p for y in q
            if x[:len(y)] == y or y[:len(x)] == x]


def _at(fp, path):
    for i in path:
        fp = fp[i]
    return fp


def _commutes(before, a, b, counters: bool) -> bool:
    """Two changes of one part that a finer footprint would call independent: both add or
    remove different members of one set or map (a sorted tuple; a footprint kept per member
    sees two objects), or, with `counters`, both add to (or take from) one counter (only an
    operation-aware footprint sees that)."""
    if all(type(v) is int for v in (before, a, b)):
        return counters
    if all(isinstance(v, tuple) for v in (before, a, b)):
        s0, sa, sb = set(before), set(a), set(b)
        return not ((sa ^ s0) & (sb ^ s0))
    return False


#: the independence relations, from the exact one to the coarsest (see the module's docstring)
RELATIONS = ("oracle", "disjoint", "keyed", "commuting")


class Bound:
    def __init__(self, graph, relation: str | None):
        """`relation`: one of `RELATIONS`, or None for the full search."""
        self.succ = {s: dict(kids) for s, kids in graph.children.items()}
        self.root = graph.root
        self.relation = None if relation == "oracle" else relation
        self.chosen: dict = {}
        self._diamonds: dict = {}

    def diamond(self, s, t, u) -> bool:
        k = (s, t, u)
        if k not in self._diamonds:
            succ = self.succ
            st, su = succ[s][t], succ[s][u]
            ok = (st in succ and su in succ and u in succ[st] and t in succ[su]
                  and succ[st][u] == succ[su][t])
            if ok and self.relation:
                f, ft, fu = _fingerprint(s), _fingerprint(st), _fingerprint(su)
                shared = _overlap(_changed(f, ft), _changed(f, fu))
                ok = not shared or self.relation != "disjoint" and all(
                    _commutes(_at(f, p), _at(ft, p), _at(fu, p),
                              self.relation == "commuting") for p in shared)
            self._diamonds[k] = self._diamonds[(s, u, t)] = ok
        return self._diamonds[k]

    def persistent(self, s, ts: set) -> bool:
        """From `s`, every step of an actor outside `ts`, on every path of such steps, forms a
        diamond with every actor in `ts` (which therefore stays enabled: no end state is
        reachable without one of them)."""
        seen, queue = {s}, deque([s])
        while queue:
            x = queue.popleft()
            enabled = self.succ.get(x)
            if enabled is None or not ts <= enabled.keys():
                return False
            for u, y in enabled.items():
                if u in ts:
                    continue
                if not all(self.diamond(x, t, u) for t in ts):
                    return False
                if y not in seen:
                    seen.add(y)
                    queue.append(y)
        return True

    def select(self, s) -> list:
        if s not in self.chosen:
            enabled = list(self.succ[s])
            self.chosen[s] = enabled
            for r in range(1, len(enabled)):
                ts = next((c for c in itertools.combinations(enabled, r)
                           if self.persistent(s, set(c))), None)
                if ts is not None:
                    self.chosen[s] = list(ts)
                    break
        return self.chosen[s]


def cost(succ: dict, root, select) -> tuple[int, int, int]:
    """(states, edges, steps) of a breadth-first search that takes `select(state)` branches,
    with the explorer's replay cost."""
    depth, queue, edges, steps = {root: 0}, deque([root]), 0, 0
    while queue:
        s = queue.popleft()
        if s not in succ:
            continue
        acts = select(s)
        edges += len(acts)
        steps += len(acts) + (len(acts) - 1) * depth[s]
        for a in acts:
            t = succ[s][a]
            if t not in depth:
                depth[t] = depth[s] + 1
                queue.append(t)
    return len(depth), edges, steps


def bounds(g) -> dict:
    """(states, edges, steps) of the full search ("full") and under each of `RELATIONS`."""
    full = Bound(g, None)
    out = {"full": cost(full.succ, g.root, lambda s: list(full.succ[s]))}
    for name in RELATIONS:
        b = Bound(g, name)
        out[name] = cost(b.succ, g.root, b.select)
    return out


def run(label: str, build, max_steps: int) -> None:
    counter = _Counter()
    t0 = time.perf_counter()
    g = state_graph(_cloner(build), max_steps, "step", counter, LIVE_LIMIT)
    dt = time.perf_counter() - t0
    if not g.complete:
        print(f"{label}: graph not complete; no bound")
        return
    rows = list(bounds(g).items())
    print(f"{label}  (graph: {g.states:,} states, {g.stutters:,} stutter loops, {dt:.1f} s;"
          f" stutter reduction executed {counter.steps:,} steps)")
    base = rows[0][1][2]
    for name, (states, edges, steps) in rows:
        print(f"  {name:9s} {states:>8,} states {edges:>8,} edges {steps:>9,} steps"
              f"   {base / steps:6.1f}x fewer steps than full")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenarios", nargs="*",
                    help=f"registered scenarios (default: {', '.join(SLOW)})")
    ap.add_argument("--compose", action="append", default=None,
                    help=f"a composed scenario (default: the HKID-release race {HKID_RACE!r})")
    args = ap.parse_args(argv)
    registry = load_all()
    for name in args.scenarios or SLOW:
        sc = registry[name]
        run(name, sc.build, sc.max_steps)
    for text in args.compose if args.compose is not None else [HKID_RACE]:
        spec = parse(text)
        run(f"compose: {text}", lambda s=spec: compose_build(s), spec.steps)


if __name__ == "__main__":
    main()
