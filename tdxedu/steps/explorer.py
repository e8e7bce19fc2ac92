"""A registered explorer scenario run step by step: `ExplorerSource` (TDX worlds and TDP MMU
roots worlds) and `roots_source` (a roots scenario by kind and kernel-version policy)."""

from __future__ import annotations

import random

from ..scenarios import registry
from ..sim.engine import Execution
from ..trace import event_kind
from .step import Finished, Frame, StepInfo, call_chain


# --- explorer scenarios (TDX worlds and TDP MMU roots worlds) -------------------------------
class ExplorerSource:
    """A registered scenario (`tdxedu.scenarios.registry`) run by the scheduler; one Step runs actor
    steps until one of them records an event (or the run ends).

    Who runs next: `choices` (a witness from `explore`) or `script` (actor names) first, then
    a `random.Random(seed)` choice among runnable actors when `seed` is given, else the first
    runnable actor (as `run_script` does)."""

    STEP_IS = ("the scheduler lets one actor at a time run to its next yield point, and keeps "
               "going until something observable happens (a SEAMCALL, a TDCALL, an IPI, a KVM "
               "event; taking or releasing a lock alone does not end a Step). The status line "
               "names that event and its actor, counts the Step's events (\"this Step: 6 "
               "events\") and lists each one under it. The explorer's witnesses count "
               "scheduler steps (one actor turn each), so they have more steps than Steps.")
    MAX_SILENT = 64

    def __init__(self, scenario, *, seed: int | None = None, script=None, choices=None):
        # a registered name, or a `registry.Scenario` itself (a composed one is not registered)
        self.scenario = registry.get(scenario) if isinstance(scenario, str) else scenario
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if isinstance(script, str):
            script = [s.strip() for s in script.replace(",", " ").split() if s.strip()]
        self.script = list(script or [])
        self.choices = list(choices or [])
        self.seed = seed
        how = ("witness" if self.choices else f"seed {seed}" if seed is not None else
               "script" if self.script else "first runnable")
        self.title = f"{self.scenario.name} ({how}): {self.scenario.description}"
        self.reset()
        self.panels = (("timeline", "roots") if self.kvm is not None
                       and hasattr(self.kvm.arch, "tdp_mmu_roots") and self.module is None
                       else ("timeline", "sept", "lifecycle"))

    def reset(self) -> None:
        self.world = self.scenario.build()
        self.ex = Execution(self.world, self.scenario.max_steps)
        self._plan = list(self.choices) + list(self.script)
        self._rng = random.Random(self.seed)
        self.n = 0
        self.done = self.ex.terminal()

    trace = property(lambda self: self.world.trace)
    module = property(lambda self: getattr(self.world, "module", None))
    kvm = property(lambda self: getattr(self.world, "kvm", None))

    @property
    def tdr(self) -> int | None:
        kt = getattr(self.world, "kt", None)
        return getattr(kt, "tdr_pa", None) or None

    def next_actor(self) -> str:
        ready = self.ex.runnable()
        if self._plan:
            name = self._plan[0]
            if name not in ready:
                raise ValueError(f"step {self.n + 1}: the script picks {name!r}, which cannot "
                                 f"run now; runnable: {', '.join(ready)}")
            return self._plan.pop(0)
        if self.seed is not None:
            return self._rng.choice(ready)
        return ready[0]

    def step(self) -> StepInfo:
        if self.done:
            raise Finished("this run is over: press Reset (or pick another run) to start again")
        first = len(self.trace)
        actors: list[str] = []
        chain: list[Frame] = []
        # One Step = scheduler steps until something observable happens (an event) or the run
        # ends; the actors that ran are listed.
        for _ in range(self.MAX_SILENT):
            name = self.next_actor()
            before = call_chain(self.ex.gens[name])
            mark = len(self.trace)
            self.ex.step(name)
            if not actors or actors[-1] != name:
                actors.append(name)
            self.done = self.ex.terminal()
            if _observable(self.trace.events[mark:]):
                chain = before
                break
            if self.done:
                break
        name = ", ".join(actors)
        self.n += 1
        note = ""
        if self.ex.outcome == "exception":
            last = (self.ex.error or "").strip().splitlines()[-1:]
            note = f"the model raised: {last[0] if last else '?'}"
        elif self.ex.outcome == "invariant_violated":
            note = "invariant violated: " + "; ".join(self.ex.violations)
        return StepInfo(self.n, self.trace.events[first:], chain, actor=name, note=note)

    def summary(self) -> str:
        lines = [f"{self.scenario.name}: {self.n} Steps ({len(self.ex.choices)} scheduler "
                 f"steps, {len(self.trace)} events)"
                 + (f", outcome {self.ex.outcome}" if self.done else ", running")]
        if self.done:
            r = self.ex.result()
            held = sorted(c for c, v in r.conditions.items() if v)
            lines.append("  conditions true: " + (", ".join(held) or "none"))
            lines += [f"  violation: {v}" for v in r.violations]
        return "\n".join(lines)


def _observable(events) -> bool:
    """A Step stops at a new event; lock operations alone do not end a Step (they are drawn
    on the timeline but are rarely what a learner steps to)."""
    return any(event_kind(e) != "lock" for e in events)


def roots_source(scenario: str = "memslot-update", policy: str = "v6.6", *,
                 seed: int | None = 0) -> ExplorerSource:
    """A TDP MMU roots scenario (`tdxedu.scenarios.roots`) by its kind and policy."""
    return ExplorerSource(f"roots-{scenario}-{policy}", seed=seed)


__all__ = ["ExplorerSource", "roots_source"]
