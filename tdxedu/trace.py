"""Trace events and the yield protocol shared by every layer.

Model code is written once and driven many ways (one model, many drivers). Two small pieces make
that possible and sit below every layer, so `tdx/`, `kvm/` and `sim/` can all use them without
pointing upwards:

* `Trace` / `Event`: a structured record (step, CPU, actor, operation, arguments, status,
  source tag) that viz, tests and the CLI read.
* `Preempt` / `WaitUntil`: what a generator-written actor yields. `Preempt` is a point where
  another CPU may run; `WaitUntil` means "this thread sleeps until the predicate holds" (a
  mutex or rwlock that waits, a wait for an IPI acknowledgement).
* `event_kind(e)`: what an event is (a SEAMCALL, an IPI, a lock operation, another KVM step),
  read by the step sources and the timeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field


def _show(a) -> str:
    """Addresses in hex, small numbers in decimal."""
    if isinstance(a, int) and not isinstance(a, bool) and a >= 0x1000:
        return f"{a:#x}"
    return str(a)


@dataclass(frozen=True, slots=True)
class Event:
    """One observable step: a SEAMCALL, a TDCALL, an IPI, a lock operation, a KVM step."""

    seq: int
    actor: str
    cpu: int | None
    op: str
    args: tuple = ()
    status: str | None = None
    source: str = ""

    def to_text(self) -> str:
        cpu = "-" if self.cpu is None else str(self.cpu)
        args = ", ".join(_show(a) for a in self.args)
        st = f" -> {self.status}" if self.status is not None else ""
        return f"{self.seq:4d} cpu{cpu:>2} {self.actor:<12} {self.op}({args}){st}"

    def to_dict(self) -> dict:
        return {
            "seq": self.seq,
            "actor": self.actor,
            "cpu": self.cpu,
            "op": self.op,
            "args": [a if isinstance(a, int | str | float | bool) else str(a) for a in self.args],
            "status": self.status,
            "source": self.source,
        }


@dataclass(slots=True)
class Trace:
    """An append-only list of events. `actor` is set by whoever drives the model."""

    events: list[Event] = field(default_factory=list)
    actor: str = "main"
    enabled: bool = True

    def emit(self, op: str, *args, status=None, cpu=None, source: str = "") -> None:
        if not self.enabled:
            return
        st = None if status is None else str(status)
        self.events.append(Event(len(self.events), self.actor, cpu, op, args, st, source))

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self):
        return iter(self.events)

    def ops(self) -> list[str]:
        return [e.op for e in self.events]

    def to_text(self) -> str:
        return "\n".join(e.to_text() for e in self.events)

    def to_json(self) -> str:
        return json.dumps([e.to_dict() for e in self.events], sort_keys=True)


@dataclass(frozen=True, slots=True)
class Preempt:
    """A preemption point: the scheduler may switch to another actor here."""

    label: str = ""


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """The actor sleeps until `ready()` is true (a waiting lock, an IPI acknowledgement)."""

    ready: Callable[[], bool]
    reason: str = ""


PREEMPT = Preempt()


MODULE_SOURCE = "tdx-module"
IPI_OPS = frozenset({"kvm_make_all_cpus_request", "smp_call_function_single"})


def event_kind(e) -> str:
    """What an event is, for drawing and stepping: "seamcall" (the TDX module's), "ipi",
    "lock" (a ``*lock`` / ``*unlock`` event) or "kvm" (any other KVM step)."""
    if e.source == MODULE_SOURCE:
        return "seamcall"
    if e.op in IPI_OPS:
        return "ipi"
    if e.op.endswith("unlock") or e.op.endswith("lock") or "_lock_" in e.op:
        return "lock"
    return "kvm"


def run_to_completion(gen):
    """Drive a generator-written operation alone: every Preempt is ignored.

    A WaitUntil whose predicate is false can never become true when nothing else runs, so it
    is a deadlock and raises RuntimeError naming what it waited for.
    """
    try:
        step = next(gen)
        while True:
            if isinstance(step, WaitUntil) and not step.ready():
                gen.close()
                raise RuntimeError(f"deadlock: waiting for {step.reason} with no other thread")
            step = next(gen)
    except StopIteration as stop:
        return stop.value
