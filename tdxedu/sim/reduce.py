"""The explorer's reduction (`explore(reduction="stutter")`): a state graph in which a step that
changes nothing is a loop, and the bounded runs read off that graph instead of re-executed.

Why. Generators cannot be copied, so every branch of an exploration but one re-runs its
whole prefix from a fresh world: almost every step the plain merging executes is such a
replay. The scenarios that take longest are BUSY retry loops: a zap that gets
TDX_OPERAND_BUSY, changes nothing and tries again, at every point of the other actor's
run, until `max_steps` cuts the run short. Keyed on each actor's step count, every retry is
a new state; the state after it is the state before it.

What. Two things, each sound on its own:

1. *Stutter steps are loops.* After an actor's step the explorer compares the world's
   fingerprint, the actor's pending yield and the actor's own local state (every frame of its
   generator chain: the instruction it stopped at and its local variables) with what they
   were before the step. When nothing changed, the step leads back to the state it left: an
   edge to itself, not a new state. An actor's position in a state key counts only the steps
   that changed something (`Execution.spos`). A comparison that cannot decide (an object
   nested too deep, an iterator) says "changed", which only costs a state. What a frame
   keeps on its stack is out of sight: a `for` loop's iterator is handled (see `frames`);
   other values an expression holds across a `yield` are assumed to follow from the locals
   and the world, as they do in this model.
2. *Run lengths from the graph.* The graph of states (no run length in the key) is built
   breadth first up to `max_steps`. The runs `max_steps` cuts short, and the shortest run to
   every end state, are then found by a breadth-first walk over (state, length) pairs of
   that graph, which executes no model code at all. The plain merging finds the same pairs
   by executing them.

The two give the same end states, verdicts, run counts and shortest witnesses as the plain
merging (tests/kvm/test_reduction_all_scenarios.py checks this on every registered
scenario). Stuttering steps are Lamport's "stuttering" ("What good is temporal logic?",
1983); a loop in the graph is what a model checker with state caching (SPIN, Holzmann 1997)
finds instead of unrolling it.
"""

from __future__ import annotations

import dis
from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from functools import cache, partial

from .engine import OUTCOMES, Execution, _replay

#: a comparison deeper than this says "changed" (see `_summary`)
DEPTH = 4
_PLAIN = (int, float, str, bytes, bool, type(None))
_CONTAINERS = (*_PLAIN, tuple, list, dict, set, frozenset)


class _Undecided:
    """Equal to nothing: what `_summary` returns where it will not look further."""

    __slots__ = ()

    def __eq__(self, other):
        return False

    def __hash__(self):
        return 0


def _summary(v, depth: int = 0):
    """A value that compares equal before and after a step exactly when `v` did not change.

    Plain values by value; containers by content; an object by identity and its attributes
    (so a result object created again with the same fields compares equal, and an object
    changed in place does not); a generator by its frames. Deeper than `DEPTH`, undecided."""
    if isinstance(v, _PLAIN):
        return (type(v), v)
    if depth >= DEPTH:
        return _Undecided()
    d = depth + 1
    if isinstance(v, tuple | list):
        return (type(v), tuple(_summary(x, d) for x in v))
    if isinstance(v, dict):
        return (dict, tuple((_summary(k, d), _summary(x, d)) for k, x in v.items()))
    if isinstance(v, set | frozenset):
        return (type(v), frozenset(_key_of(x) for x in v))
    if hasattr(v, "gi_frame"):
        return ("gen", frames(v, d))
    if callable(v) and hasattr(v, "__code__"):
        cells = tuple(_summary(c.cell_contents, d) for c in (v.__closure__ or ()))
        return ("fn", v.__code__, cells)
    slots = getattr(type(v), "__slots__", None)
    if slots is not None:  # a small value object (a SEAMCALL's Result, a Call): its fields
        return ("obj", type(v), tuple((s, _shallow(getattr(v, s, None), d)) for s in slots))
    if hasattr(v, "__dict__"):
        # a model object (the host, a vCPU, a lock): what changes in it that matters is in the
        # world's fingerprint, so the same object is the same; another one is compared by type
        # and fields (see `_same_object`)
        return _Obj(v, d)
    return _Undecided()


class _Obj:
    """A model object in a frame: equal to the same object, or to one of the same type whose
    fields compare equal (plain values by value, objects by identity)."""

    __slots__ = ("obj", "depth")

    def __init__(self, obj, depth: int):
        self.obj, self.depth = obj, depth

    def __eq__(self, other):
        if not isinstance(other, _Obj):
            return False
        a, b = self.obj, other.obj
        if a is b:
            return True
        if type(a) is not type(b) or vars(a).keys() != vars(b).keys():
            return False
        return all(_shallow(x, self.depth) == _shallow(vars(b)[k], self.depth)
                   for k, x in vars(a).items())

    def __hash__(self):
        return hash(type(self.obj))


def _key_of(x):
    return (type(x), x) if isinstance(x, _PLAIN) else ("id", id(x))


def _shallow(x, depth: int):
    """An attribute of an object: plain values and containers by content, objects by
    identity (their own changes show in the world's fingerprint or their own frame)."""
    if isinstance(x, _CONTAINERS):
        return _summary(x, depth)
    if hasattr(x, "gi_frame"):
        return ("gen", frames(x, depth))
    return ("id", id(x))


def frames(gen, depth: int = 0) -> tuple:
    """An actor's local state: for each generator of its `yield from` chain, the code, the
    instruction it is suspended at and its local variables.

    A frame suspended inside a `for` loop also holds the loop's iterator, on its stack, where
    no summary can see it. Such a frame is the same only while it has not run: while it still
    waits on the very same inner generator. The innermost frame always ran."""
    out = []
    while gen is not None:
        f = gen.gi_frame
        if f is None:
            out.append(("done",))
            break
        inner = gen.gi_yieldfrom  # the next link: summarised as one, not again as a local
        hidden = None
        if _in_for_loop(gen.gi_code, f.f_lasti):
            hidden = _Undecided() if inner is None else _Same(inner)
        out.append((gen.gi_code, f.f_lasti, hidden,
                    tuple((k, ("next",) if x is inner and inner is not None
                           else _summary(x, depth)) for k, x in f.f_locals.items())))
        gen = inner
    return tuple(out)


@cache
def _for_loops(code) -> tuple:
    """The bytecode ranges of `code`'s `for` loop bodies (FOR_ITER to the loop's exit)."""
    return tuple((i.offset, i.argval) for i in dis.get_instructions(code)
                 if i.opname == "FOR_ITER")


def _in_for_loop(code, lasti: int) -> bool:
    return any(start < lasti < end for start, end in _for_loops(code))


class _Same:
    """Equal only to a `_Same` of the very same object (held, so its id cannot be reused)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        return isinstance(other, _Same) and other.obj is self.obj

    def __hash__(self):
        return id(self.obj)


def _before(ex: Execution, n: str) -> tuple:
    """What a step of actor `n` must leave as it was to be a loop: its frames and its yield."""
    return (_label(ex.pending[n]), frames(ex.gens[n]))


def _label(p):
    return getattr(p, "label", None) or getattr(p, "reason", None)


@dataclass
class StateGraph:
    """States (keys) and the steps between them, in the order the explorer found them."""

    root: Hashable
    #: state -> [(actor, next state)] in runnable order; absent for end states and for
    #: states first reached at `max_steps` (nothing runs from there)
    children: dict = field(default_factory=dict)
    #: end state (a final key) -> (outcome, conditions)
    finals: dict = field(default_factory=dict)
    #: state -> its conditions, for a run cut short there
    conditions: dict = field(default_factory=dict)
    stutters: int = 0
    complete: bool = True

    @property
    def states(self) -> int:
        return len(self.conditions)


def state_graph(build, max_steps: int, check: str, counter, live_limit: int,
                max_states: int = 2_000_000) -> StateGraph:
    """Every state reachable in fewer than `max_steps` steps, breadth first, a stutter step
    being an edge back to its own state. Past `max_states` states nothing more is expanded
    (`complete` is then False)."""
    root = Execution(build(), float("inf"), check)
    root.counter, root.spos = counter, dict.fromkeys(root.gens, 0)
    g = StateGraph(root=None)
    g.root = _visit(g, root, None, None)
    queue: deque = deque()
    if g.root not in g.finals:
        g.conditions[g.root] = dict(root.world.conditions())
        queue.append((root, g.root, 0))
    live = len(queue)
    while queue:
        if len(g.conditions) > max_states:
            g.complete = False
            break
        ex, key, depth = queue.popleft()
        if isinstance(ex, tuple):  # (choices, spos) of an execution not kept: replay it
            ex = _replay_at(build, *ex, check, counter)
        else:
            live -= 1
        kids = g.children[key] = []
        names = ex.runnable()
        prefix, spos = list(ex.choices), ex.spos
        # the last step continues this execution, so its actor's frames are taken now; for
        # the others `ex` stays in this state and is asked only if a step changed no
        # fingerprint (summaries cost time)
        last = names[-1] if names else None
        last_before = None if last is None else _before(ex, last)
        for n in names:
            if n == last:
                child, before = ex, last_before
            else:
                child = _replay_at(build, prefix, spos, check, counter)
                before = partial(_before, ex, n)
            child.step(n)
            ckey = _visit(g, child, key, (n, before))
            kids.append((n, ckey))
            if ckey in g.finals or ckey in g.conditions:
                continue  # an end state, a stutter (ckey == key) or a state seen before
            g.conditions[ckey] = dict(child.world.conditions())
            if depth + 1 >= max_steps:
                continue  # first reached at the bound: every run is cut here
            if live < live_limit:
                queue.append((child, ckey, depth + 1))
                live += 1
            else:
                queue.append(((list(child.choices), dict(child.spos)), ckey, depth + 1))
    return g


def _replay_at(build, choices: list[str], spos: dict, check: str, counter) -> Execution:
    """An execution at the end of `choices`, with the step counts the graph keys on."""
    ex = _replay(build, choices, float("inf"), check, counter)
    ex.spos = dict(spos)
    return ex


def _visit(g: StateGraph, ex: Execution, parent, step) -> Hashable:
    """The key of the state `ex` is in after `step` = (actor, `_before` it, or a function that
    gives it) from `parent`; an end state is recorded with its outcome and conditions."""
    if ex.terminal():
        r = ex.result()
        fk = ex.final_key(r)
        if fk not in g.finals:
            g.finals[fk] = (r.outcome, r.conditions)
        return fk
    fp = ex.world.fingerprint()
    if step is not None:
        n, before = step
        if n not in ex.finished and fp == parent[0]:
            if callable(before):
                before = before()
            if _before(ex, n) == before:
                g.stutters += 1
                return parent
        ex.spos[n] += 1
    return ex.state_key(False, fp)


def bounded_runs(g: StateGraph, max_steps: int, max_executions: int):
    """The runs of at most `max_steps` steps, read off the graph breadth first over (state,
    length) pairs as the plain merging executes them: (results, outcomes, pruned, complete).
    A run that reaches `max_steps` in a state that is not an end state is cut short there
    (outcome "step_bound", the conditions of that state)."""
    results: list = []
    outcomes: Counter = Counter()
    pruned = 0
    seen_final: set = set()

    def record(fk, outcome, conds, choices) -> None:
        nonlocal pruned
        if fk in seen_final:
            pruned += 1
            return
        seen_final.add(fk)
        results.append((choices, conds))
        outcomes[outcome] += 1

    if g.root in g.finals:
        outcome, conds = g.finals[g.root]
        record(g.root, outcome, conds, [])
        return results, outcomes, pruned, True
    parent: dict = {(g.root, 0): None}
    queue: deque = deque([(g.root, 0)])

    def path(pair, last) -> list[str]:
        out = [last]
        while parent[pair] is not None:
            pair, actor = parent[pair]
            out.append(actor)
        return out[::-1]

    while queue:
        if len(results) >= max_executions:
            return results, outcomes, pruned, False
        pair = queue.popleft()
        key, depth = pair
        kids = g.children.get(key)
        if kids is None:  # never expanded: the graph was cut at `max_states`
            continue
        for actor, ckey in kids:
            if ckey in g.finals:
                outcome, conds = g.finals[ckey]
                record(ckey, outcome, conds, path(pair, actor))
                continue
            if depth + 1 >= max_steps:
                conds = dict(g.conditions[ckey])
                conds.update({o: o == "step_bound" for o in OUTCOMES})
                fk = ("final", "step_bound", ckey[0], tuple(sorted(conds.items())), (), None)
                record(fk, "step_bound", conds, path(pair, actor))
                continue
            cpair = (ckey, depth + 1)
            if cpair in parent:
                pruned += 1
                continue
            parent[cpair] = (pair, actor)
            queue.append(cpair)
    return results, outcomes, pruned, g.complete

