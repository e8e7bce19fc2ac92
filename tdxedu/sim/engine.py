"""Run generator-written actors under a scheduler: scripted, seeded-random or exhaustive.

An actor is a generator that yields at preemption points (`Preempt`) or when it must sleep
(`WaitUntil`). A `World` owns the model, its actors and three views of its state:
`fingerprint()` (for pruning), `invariants()` (violations, checked after every step) and
`conditions()` (named facts about a finished run, e.g. "kvm_bug" or "hkid_leaked").

`explore()` runs every interleaving breadth-first, replaying a prefix from a fresh (pickled)
copy of the world only where it must (generators cannot be copied; the last child of a state
continues its parent's execution, and new states keep their live execution in the queue). It
prunes a branch whose state was already reached: same model fingerprint, same position and
pending yield of every live actor, same finished actors; a finished run is identified by its
outcome, conditions and final fingerprint. Like herd7 for a litmus test, it answers per
condition: always / sometimes / never, with the shortest run that shows it.
"""

from __future__ import annotations

import copy
import json
import pickle
import random
import traceback
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from ..trace import Preempt, Trace, WaitUntil

OUTCOMES = ("completed", "deadlock", "step_bound", "invariant_violated", "exception")


class World:
    """Base class for a scenario's world. Subclasses fill `self.trace` and `actors()`.

    A world whose actors are created from its own state only (no closures over the original
    object) may set `cloneable = True`: the explorer then builds it once and deep-copies it
    for every replay instead of building it again."""

    trace: Trace
    cloneable = False

    def actors(self) -> dict[str, Iterable]:
        raise NotImplementedError

    def fingerprint(self) -> Hashable:
        return None  # no pruning unless the world says what its state is

    def invariants(self) -> list[str]:
        return []

    def conditions(self) -> dict[str, bool]:
        return {}


@dataclass
class RunResult:
    outcome: str
    choices: list[str]
    conditions: dict[str, bool]
    trace: Trace
    violations: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def steps(self) -> int:
        return len(self.choices)

    def to_dict(self) -> dict:
        return {
            "outcome": self.outcome,
            "choices": self.choices,
            "conditions": self.conditions,
            "violations": self.violations,
            "error": self.error,
            "trace": [e.to_dict() for e in self.trace],
        }


class Execution:
    """One run of a world, advanced one actor step at a time."""

    def __init__(self, world: World, max_steps: int = 500, check: str = "step"):
        self.world = world
        self.gens = dict(world.actors())
        self.pending: dict[str, object] = {n: None for n in self.gens}
        self.pos: dict[str, int] = {n: 0 for n in self.gens}
        self.finished: set[str] = set()
        self.choices: list[str] = []
        self.max_steps = max_steps
        self.check = check
        self.outcome: str | None = None
        self.violations: list[str] = []
        self.error: str | None = None
        self.counter = None  # an explorer's step counter (`_Counter`), if any
        #: per actor, the steps that changed something (set by the "stutter" reduction, whose
        #: state keys count these instead of all steps: see tdxedu/sim/reduce.py)
        self.spos: dict[str, int] | None = None

    def runnable(self) -> list[str]:
        out = []
        for name in self.gens:
            if name in self.finished:
                continue
            p = self.pending[name]
            if isinstance(p, WaitUntil) and not p.ready():
                continue
            out.append(name)
        return out

    def step(self, name: str) -> None:
        if self.counter is not None:
            self.counter.steps += 1
        self.world.trace.actor = name
        self.choices.append(name)
        self.pos[name] += 1
        try:
            y = next(self.gens[name])
            if not isinstance(y, Preempt | WaitUntil):
                raise TypeError(f"actor {name} yielded {y!r}; expected Preempt or WaitUntil")
            self.pending[name] = y
        except StopIteration:
            self.finished.add(name)
            self.pending[name] = None
        except Exception:  # a crash of the model itself: reported, never swallowed silently
            self.outcome = "exception"
            self.error = traceback.format_exc(limit=6)
            return
        if self.check == "step":
            v = self.world.invariants()
            if v:
                self.outcome, self.violations = "invariant_violated", v

    def terminal(self) -> bool:
        """Decides the outcome once nothing more can happen."""
        if self.outcome:
            return True
        if len(self.finished) == len(self.gens):
            v = self.world.invariants()
            self.outcome, self.violations = ("invariant_violated", v) if v else ("completed", [])
            return True
        if not self.runnable():
            self.outcome = "deadlock"
            return True
        if len(self.choices) >= self.max_steps:
            self.outcome = "step_bound"
            return True
        return False

    def state_key(self, depth: bool = True, fp: Hashable = None) -> Hashable:
        """What decides the rest of this run: the world's fingerprint, the position and pending
        yield of every live actor, and which actors have finished (a finished actor has no
        future, so its step count is left out). `depth` adds the run's length, which matters
        only when `max_steps` can cut a run short. None when the world has no fingerprint.
        `fp`: the world's fingerprint, when the caller has it already."""
        fp = self.world.fingerprint() if fp is None else fp
        if fp is None:
            return None
        pos = self.pos if self.spos is None else self.spos
        live = tuple(
            (n, pos[n], getattr(self.pending[n], "label", None) or
             getattr(self.pending[n], "reason", None))
            for n in sorted(self.gens) if n not in self.finished)
        key = (fp, live, tuple(sorted(self.finished)))
        return (key, len(self.choices)) if depth else key

    def final_key(self, r: RunResult) -> Hashable:
        """A finished run's identity: nothing follows it, so only its outcome, its conditions
        and the model state it ended in count (not how many steps each actor took)."""
        fp = self.world.fingerprint()
        if fp is None:
            return None
        return ("final", r.outcome, fp, tuple(sorted(r.conditions.items())),
                tuple(r.violations), r.error)

    def result(self) -> RunResult:
        conds = {}
        if self.outcome != "exception":
            try:
                conds = dict(self.world.conditions())
            except Exception:
                self.outcome, self.error = "exception", traceback.format_exc(limit=6)
        for o in OUTCOMES:
            conds[o] = self.outcome == o
        return RunResult(self.outcome, list(self.choices), conds, self.world.trace,
                         list(self.violations), self.error)


def run(build: Callable[[], World], chooser, max_steps: int = 500, check="step") -> RunResult:
    ex = Execution(build(), max_steps, check)
    while not ex.terminal():
        ex.step(chooser(ex))
    return ex.result()


def run_seeded(build: Callable[[], World], seed: int, **kw) -> RunResult:
    """A random interleaving; the same seed gives the same trace, byte for byte."""
    rng = random.Random(seed)
    return run(build, lambda ex: rng.choice(ex.runnable()), **kw)


def run_script(build: Callable[[], World], script: list[str], **kw) -> RunResult:
    """Follow `script` (actor names, one per step); then run what is left in order.

    Raises ValueError naming the step when the script picks an actor that cannot run."""
    it = iter(script)

    def choose(ex: Execution) -> str:
        name = next(it, None)
        ready = ex.runnable()
        if name is None:
            return ready[0]
        if name not in ready:
            raise ValueError(f"step {len(ex.choices)}: {name!r} cannot run now; runnable: {ready}")
        return name

    return run(build, choose, **kw)


def replay(build: Callable[[], World], choices: list[str], **kw) -> RunResult:
    return run_script(build, choices, **kw)


@dataclass
class Verdict:
    condition: str
    verdict: str  # always / sometimes / never
    true_runs: int
    runs: int
    witness: list[str] | None  # shortest choices where the condition holds
    counterexample: list[str] | None  # shortest choices where it does not


@dataclass
class Exploration:
    name: str
    executions: int
    pruned: int
    outcomes: Counter
    verdicts: dict[str, Verdict]
    complete: bool
    build: Callable[[], World] | None = None
    max_steps: int = 500  # replays of witnesses end where the explored runs ended
    check: str = "step"
    steps: int = 0  # steps executed, replays included
    reduction: str = "merge"

    def verdict(self, condition: str) -> str:
        return self.verdicts[condition].verdict

    def witness(self, condition: str) -> RunResult | None:
        v = self.verdicts[condition]
        return None if v.witness is None else replay(self.build, v.witness,
                                                      max_steps=self.max_steps, check=self.check)

    def counterexample(self, condition: str) -> RunResult | None:
        v = self.verdicts[condition]
        return None if v.counterexample is None else replay(
            self.build, v.counterexample, max_steps=self.max_steps, check=self.check)

    def to_text(self) -> str:
        lines = [f"scenario {self.name}: {self.executions} executions"
                 f" ({self.pruned} pruned){'' if self.complete else ', INCOMPLETE'}"]
        w = max((len(c) for c in self.verdicts), default=10)
        for c, v in self.verdicts.items():
            lines.append(f"  {c:<{w}}  {v.verdict:<9} ({v.true_runs}/{v.runs} runs)")
        return "\n".join(lines)

    def to_json(self, traces: bool = True) -> str:
        d = {"scenario": self.name, "executions": self.executions, "pruned": self.pruned,
             "complete": self.complete, "outcomes": dict(self.outcomes), "verdicts": {},
             "reduction": self.reduction, "steps": self.steps}
        for c, v in self.verdicts.items():
            entry = {"verdict": v.verdict, "true_runs": v.true_runs, "runs": v.runs}
            if traces and v.witness is not None:
                entry["witness"] = self.witness(c).to_dict()
            d["verdicts"][c] = entry
        return json.dumps(d, sort_keys=True)


def _cloner(build: Callable[[], World]) -> Callable[[], World]:
    """For a cloneable world: build it once and hand out copies. Pickling is ~5x faster than
    `copy.deepcopy`; a world that cannot be pickled (e.g. a lambda in its state) is deep-copied."""
    template = build()
    if not template.cloneable:
        return build
    try:
        blob = pickle.dumps(template, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)

        def clone():
            return pickle.loads(blob)
    except Exception:  # noqa: BLE001 - anything unpicklable falls back to deepcopy
        def clone():
            return copy.deepcopy(template)

    clone.original = build
    return clone


def _longest_path(root: Hashable, edges: dict) -> int:
    """Length of the longest path from `root` in the explored graph of states (a DAG: every
    step moves a live actor forward or finishes it)."""
    best: dict = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            best[node] = max((best[c] + 1 for c in edges.get(node, ())), default=0)
            continue
        if node in best:
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in edges.get(node, ()) if c not in best)
    return best.get(root, 0)


#: explore() keeps at most this many live executions in its queue; others are replayed
LIVE_LIMIT = 4096


class _Counter:
    """Steps executed by one exploration, replays included (what the bench reports)."""

    def __init__(self):
        self.steps = 0


def _fp_of(key: Hashable, depth_key: bool):
    """The world fingerprint inside a state key (see `Execution.state_key`)."""
    return key[0][0] if depth_key else key[0]


def _bfs(build, max_steps, prune, max_executions, check, depth_key, give_up_depth,
         counter=None):
    """One breadth-first pass: (results, outcomes, pruned, complete, edges, root key), or None
    when a depth-free pass reaches `give_up_depth` (the caller then keys on depth)."""
    counter = counter if counter is not None else _Counter()
    seen: set = set()
    edges: dict | None = None if depth_key or not prune else {}
    root = Execution(build(), max_steps, check)
    root.counter = counter
    results: list[tuple[list[str], dict[str, bool]]] = []
    outcomes: Counter = Counter()
    pruned = 0

    def finish(ex: Execution, parent_key) -> tuple[bool, Hashable]:
        """Record a state; (False, key) when it was seen before (pruned)."""
        nonlocal pruned
        term = ex.terminal()
        r = ex.result() if term else None
        key = None
        if prune:
            key = ex.final_key(r) if term else ex.state_key(depth_key)
            if edges is not None and parent_key is not None and key is not None:
                edges.setdefault(parent_key, set()).add(key)
            if key is not None:
                if key in seen:
                    pruned += 1
                    return False, key
                seen.add(key)
        if term:
            results.append((r.choices, r.conditions))
            outcomes[r.outcome] += 1
        return True, key

    queue: deque = deque()
    new, root_key = finish(root, None)
    if new and not root.outcome:
        queue.append((root, root_key))
    live = len(queue)
    while queue:
        if len(results) >= max_executions:
            return results, outcomes, pruned, False, edges, root_key
        ex, key = queue.popleft()
        if isinstance(ex, list):  # a prefix whose execution was not kept: replay it
            ex = _replay(build, ex, max_steps, check, counter)
        else:
            live -= 1
        if edges is not None and len(ex.choices) >= give_up_depth:
            return None
        names = ex.runnable()
        prefix = list(ex.choices)
        for i, n in enumerate(names):
            # the last child continues the parent's own execution; the others replay it
            child = ex if i == len(names) - 1 else _replay(build, prefix, max_steps, check,
                                                           counter)
            child.step(n)
            new, ckey = finish(child, key)
            if not new or child.outcome:
                continue
            if live < LIVE_LIMIT:
                queue.append((child, ckey))
                live += 1
            else:
                queue.append((list(child.choices), ckey))
    return results, outcomes, pruned, True, edges, root_key


def _replay(build, choices: list[str], max_steps: int, check: str, counter=None) -> Execution:
    """An execution at the end of `choices`, a prefix the explorer ran before: its invariants
    held after every one of its steps then, and a world is deterministic, so they are not
    checked again on the way."""
    ex = Execution(build(), max_steps, "replay")
    ex.counter = counter
    for n in choices:
        ex.step(n)
    ex.check = check
    return ex


REDUCTIONS = ("none", "merge", "stutter")


def explore(
    build: Callable[[], World],
    *,
    name: str = "scenario",
    max_steps: int = 200,
    prune: bool = True,
    max_executions: int = 200_000,
    check: str = "step",
    reduction: str | None = None,
) -> Exploration:
    """Every interleaving of a small world, breadth first (so witnesses are shortest).

    `reduction`: "none" runs every interleaving; "merge" (the default; `prune=False` means
    "none") does not explore a state already reached; "stutter" builds the graph of states
    once, a step that changes nothing being a loop, and reads the runs `max_steps` allows off
    it (`tdxedu.sim.reduce`): the same verdicts, executions and shortest witnesses, far fewer
    steps where actors retry (a BUSY retry loop is a loop, not a new state per retry).

    With merging, a state is the world's
    fingerprint plus each live actor's position and pending yield and the set of finished
    actors (`Execution.state_key`); a finished run is its outcome, conditions and final
    fingerprint (`Execution.final_key`). Breadth first, a state is first reached by a
    shortest run, so witnesses stay shortest. The run's length is left out of the key only
    when it cannot matter: a first pass without it is kept if the longest run it found is
    shorter than `max_steps` (no run was or could have been cut short); otherwise the
    exploration runs again with the length in the key."""
    if reduction is None:
        reduction = "merge" if prune else "none"
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")
    prune = reduction != "none"
    build = _cloner(build)
    counter = _Counter()
    out = None
    if reduction == "stutter" and build().fingerprint() is not None:
        from .reduce import bounded_runs, state_graph
        graph = state_graph(build, max_steps, check, counter, LIVE_LIMIT,
                            max_states=10 * max_executions)
        out = bounded_runs(graph, max_steps, max_executions)
    if out is None and prune:
        out = _bfs(build, max_steps, True, max_executions, check, False, max_steps // 2,
                   counter)
        if out is not None and out[5] is not None and (
                not out[3] or _longest_path(out[5], out[4]) >= max_steps):
            out = None  # a run could be cut short (or the pass was capped): key on length
    if out is None:
        out = _bfs(build, max_steps, prune, max_executions, check, True, max_steps, counter)
    results, outcomes, pruned, complete = out[:4]
    verdicts: dict[str, Verdict] = {}
    names: list[str] = []
    for _, conds in results:
        for c in conds:
            if c not in names:
                names.append(c)
    for c in names:
        trues = [ch for ch, conds in results if conds.get(c)]
        falses = [ch for ch, conds in results if not conds.get(c)]
        n = len(results)
        v = "always" if len(trues) == n else "never" if not trues else "sometimes"
        verdicts[c] = Verdict(c, v, len(trues), n,
                              min(trues, key=len) if trues else None,
                              min(falses, key=len) if falses else None)
    return Exploration(name, len(results), pruned, outcomes, verdicts, complete, build,
                       max_steps, check, steps=counter.steps, reduction=reduction)
