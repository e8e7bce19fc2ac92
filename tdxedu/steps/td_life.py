"""A TD's life through KVM's code, one SEAMCALL per Step: `TdLifeSource` (build and
teardown) and `teardown_source` (the teardown only)."""

from __future__ import annotations

from ..kvm.tdx import TEARDOWN_POLICIES
from ..scenarios.td import RunningTd
from ..tdx import TdxModule
from ..tdx.pamt import PAGE_SIZE
from ..trace import MODULE_SOURCE, Trace, run_to_completion
from ..units import parse_size
from .step import Finished, StepInfo, call_chain

MAX_STEP_PAGES = 1024  # stepping is for small TDs: 4 MiB of guest memory at most



# --- a TD's life through KVM's code ---------------------------------------------------------
class TdLifeSource:
    """A TD built with KVM's ioctls and torn down under `strategy`, one SEAMCALL per step
    (`STEP_IS` says exactly what a Step covers).

    `phases` = ("build", "teardown") steps both; ("teardown",) builds first and steps only
    the teardown (`RunningTd.teardown`'s order, `tdxedu.kvm.teardown`)."""

    STEP_IS = ("the model runs until the TDX module records something: a SEAMCALL from KVM, "
               "or a TD exit of the guest. What else is recorded in the same stretch belongs "
               "to that Step: KVM's locks and IPIs on the way, or the guest's TDCALLs after a "
               "VP.ENTER. The status line counts them (\"this Step: 16 events: 1 SEAMCALL, 15 "
               "guest TDCALLs\") and lists each one under it.")

    def __init__(self, memory="64K", vcpus: int = 2, strategy: str = "v6.16", *,
                 phases: tuple[str, ...] = ("build", "teardown"), packages: int = 1):
        if strategy not in TEARDOWN_POLICIES:
            raise ValueError(f"unknown teardown strategy {strategy!r}; "
                             f"choose one of {', '.join(TEARDOWN_POLICIES)}")
        size = parse_size(memory)
        if size // PAGE_SIZE > MAX_STEP_PAGES:
            raise ValueError(f"memory {memory!r} is {size // PAGE_SIZE} pages: step through at "
                             f"most {MAX_STEP_PAGES} (4M); use RunningTd for big TDs")
        if isinstance(vcpus, bool) or not isinstance(vcpus, int) or not 1 <= vcpus <= 8:
            raise ValueError(f"vcpus must be an int from 1 to 8, got {vcpus!r}")
        if not set(phases) <= {"build", "teardown"} or not phases:
            raise ValueError(f"phases must be drawn from ('build', 'teardown'), got {phases!r}")
        self.memory, self.vcpus, self.strategy = memory, vcpus, strategy
        self.phases, self.packages = tuple(phases), packages
        what = " and ".join(p for p in ("build", "teardown") if p in phases)
        self.title = (f"{what} of a {memory} TD with {vcpus} vCPU{'s' * (vcpus > 1)}, "
                      f"teardown strategy {strategy}")
        self.panels = ("timeline", "lifecycle", "sept", "pamt")
        self.reset()

    td_options: dict = {}  # extra RunningTd options (a Dynamic PAMT host, a policy, ...)

    def reset(self) -> None:
        self.td = RunningTd(self.memory, self.vcpus, packages=self.packages, deferred=True,
                            **self.td_options)
        if "build" not in self.phases:
            run_to_completion(self.td.build_steps)
        self.start = len(self.td.trace)
        self.phase = self.phases[0]
        self._gen = self._whole()
        self.done = False
        self.n = 0
        self._counts0: dict[str, int] = {}
        self._tdr = self.td.kt.tdr_pa or None

    def _whole(self):
        if "build" in self.phases:
            yield from self.td.build_steps
            self._tdr = self.td.kt.tdr_pa
        if "teardown" in self.phases:
            self.phase = "teardown"
            self._counts0 = dict(self.td.host.module.counts)
            yield from self.td.teardown_steps(self.strategy)

    # panel state
    @property
    def trace(self) -> Trace:
        return self.td.trace

    @property
    def module(self) -> TdxModule:
        return self.td.host.module

    @property
    def tdr(self) -> int | None:
        return self._tdr or self.td.kt.tdr_pa or None

    kvm = property(lambda self: self.td.kvm)

    def step(self) -> StepInfo:
        if self.done:
            raise Finished("the run is over: press Reset (or change a setting) to start again")
        trace = self.td.trace
        first = len(trace)
        chain = call_chain(self._gen)
        while True:
            mark = len(trace)
            before = call_chain(self._gen)
            try:
                next(self._gen)
            except StopIteration:
                self.done = True
                break
            if any(e.source == MODULE_SOURCE for e in trace.events[mark:]):
                chain = before
                break
        self.n += 1
        return StepInfo(self.n, trace.events[first:], chain, note="" if not self.done else
                        "finished")

    def summary(self) -> str:
        kt, m = self.td.kt, self.td.host.module
        lines = [f"{self.title}: {self.n} steps, phase {self.phase}"
                 + (", finished" if self.done else "")]
        if self.phase == "teardown":
            counts = {k: v - self._counts0.get(k, 0) for k, v in m.counts.items()
                      if v - self._counts0.get(k, 0)}
            lines.append(f"  HKID {'free' if not kt.hkid_assigned else 'still assigned'}; "
                         f"{len(kt.leaked)} pages leaked; KVM_BUG_ON: {len(self.td.kvm.bugs)}")
            lines.append(f"  teardown SEAMCALLs so far, per leaf ({sum(counts.values())} "
                         "in all):")
            lines += [f"  {leaf:<28} {n}" for leaf, n in sorted(counts.items())]
        return "\n".join(lines)


def teardown_source(memory="64K", vcpus: int = 2, strategy: str = "v6.16") -> TdLifeSource:
    return TdLifeSource(memory, vcpus, strategy, phases=("teardown",))


__all__ = ["TdLifeSource", "teardown_source", "MAX_STEP_PAGES"]
