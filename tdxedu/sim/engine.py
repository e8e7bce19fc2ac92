"""Run generator-written actors under a scheduler: scripted, seeded-random or exhaustive.

An actor is a generator that yields at preemption points (`Preempt`) or when it must sleep
(`WaitUntil`). A `World` owns the model, its actors and three views of its state:
`fingerprint()` (for pruning), `invariants()` (violations, checked after every step) and
`conditions()` (named facts about a finished run, e.g. "kvm_bug" or "hkid_leaked").

`explore()` runs every interleaving breadth-first, replaying each prefix from a fresh world
(generators cannot be copied), and prunes a branch whose state was already reached (same model
fingerprint and same position of every actor). Like herd7 for a litmus test, it answers per
condition: always / sometimes / never, with the shortest run that shows it.
"""

from __future__ import annotations

import copy
import json
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

    def state_key(self) -> Hashable:
        fp = self.world.fingerprint()
        if fp is None:
            return None
        acts = tuple(
            (n, self.pos[n], getattr(self.pending[n], "label", None) or
             getattr(self.pending[n], "reason", None))
            for n in sorted(self.gens)
        )
        return (fp, acts)

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

    def verdict(self, condition: str) -> str:
        return self.verdicts[condition].verdict

    def witness(self, condition: str) -> RunResult | None:
        v = self.verdicts[condition]
        return None if v.witness is None else replay(self.build, v.witness)

    def counterexample(self, condition: str) -> RunResult | None:
        v = self.verdicts[condition]
        return None if v.counterexample is None else replay(self.build, v.counterexample)

    def to_text(self) -> str:
        lines = [f"scenario {self.name}: {self.executions} executions"
                 f" ({self.pruned} pruned){'' if self.complete else ', INCOMPLETE'}"]
        w = max((len(c) for c in self.verdicts), default=10)
        for c, v in self.verdicts.items():
            lines.append(f"  {c:<{w}}  {v.verdict:<9} ({v.true_runs}/{v.runs} runs)")
        return "\n".join(lines)

    def to_json(self, traces: bool = True) -> str:
        d = {"scenario": self.name, "executions": self.executions, "pruned": self.pruned,
             "complete": self.complete, "outcomes": dict(self.outcomes), "verdicts": {}}
        for c, v in self.verdicts.items():
            entry = {"verdict": v.verdict, "true_runs": v.true_runs, "runs": v.runs}
            if traces and v.witness is not None:
                entry["witness"] = self.witness(c).to_dict()
            d["verdicts"][c] = entry
        return json.dumps(d, sort_keys=True)


def explore(
    build: Callable[[], World],
    *,
    name: str = "scenario",
    max_steps: int = 200,
    prune: bool = True,
    max_executions: int = 200_000,
    check: str = "step",
) -> Exploration:
    """Every interleaving of a small world, breadth first (so witnesses are shortest)."""
    template = build()
    if template.cloneable:
        original = build

        def build():  # noqa: F811 - every replay starts from a copy of one built world
            return copy.deepcopy(template)

        build.original = original
    seen: set = set()
    queue: deque[list[str]] = deque([[]])
    results: list[tuple[list[str], dict[str, bool]]] = []
    outcomes: Counter = Counter()
    pruned = 0
    complete = True
    while queue:
        if len(results) >= max_executions:
            complete = False
            break
        prefix = queue.popleft()
        ex = Execution(build(), max_steps, check)
        for name_ in prefix:
            ex.step(name_)
        if prune:
            key = ex.state_key()
            if key is not None:
                if key in seen:
                    pruned += 1
                    continue
                seen.add(key)
        if ex.terminal():
            r = ex.result()
            results.append((r.choices, r.conditions))
            outcomes[r.outcome] += 1
            continue
        for n in ex.runnable():
            queue.append(prefix + [n])
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
    return Exploration(name, len(results), pruned, outcomes, verdicts, complete, build)
