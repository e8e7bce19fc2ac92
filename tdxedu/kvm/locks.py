"""Host-kernel locks that *wait* (unlike the TDX module's try-locks).

Written as generators: `yield from kvm.mmu_lock.write_lock(me)` sleeps (yields `WaitUntil`)
until the lock is free, so the scheduler runs someone else. `kvm->mmu_lock` is an rwlock on
x86 (KVM_HAVE_MMU_RWLOCK); `kvm->lock`, `vcpu->mutex` and `pamt_lock` are a mutex / spinlock.
"""

from __future__ import annotations

from ..trace import Trace, WaitUntil

SRC = "include/linux/rwlock.h, kernel/locking/mutex.c"


def _emit(trace: Trace | None, op: str, name: str) -> None:
    """Lock operations appear in the trace, so a timeline can draw who held what."""
    if trace is not None and trace.enabled:
        trace.emit(op, name, source=SRC)


class RwLock:
    __slots__ = ("name", "readers", "writer", "trace")

    def __init__(self, name: str, trace: Trace | None = None):
        self.name = name
        self.readers: list[str] = []
        self.writer: str | None = None
        self.trace = trace

    def read_lock(self, who: str):
        if self.writer is not None:
            yield WaitUntil(lambda: self.writer is None, f"{self.name} for read")
        self.readers.append(who)
        _emit(self.trace, "read_lock", self.name)

    def write_lock(self, who: str):
        if self.writer is not None or self.readers:
            yield WaitUntil(lambda: self.writer is None and not self.readers,
                            f"{self.name} for write")
        self.writer = who
        _emit(self.trace, "write_lock", self.name)

    def read_unlock(self, who: str) -> None:
        self.readers.remove(who)
        _emit(self.trace, "read_unlock", self.name)

    def write_unlock(self, who: str) -> None:
        if self.writer != who:
            raise RuntimeError(f"{who} unlocks {self.name} held by {self.writer}")
        self.writer = None
        _emit(self.trace, "write_unlock", self.name)

    def held_for_write(self, who: str | None = None) -> bool:
        return self.writer is not None and (who is None or self.writer == who)

    def held(self) -> bool:
        return self.writer is not None or bool(self.readers)


class Mutex:
    __slots__ = ("name", "owner", "trace")

    def __init__(self, name: str, trace: Trace | None = None):
        self.name = name
        self.owner: str | None = None
        self.trace = trace

    def lock(self, who: str):
        if self.owner is not None:
            yield WaitUntil(lambda: self.owner is None, self.name)
        self.owner = who
        _emit(self.trace, "mutex_lock", self.name)

    def trylock(self, who: str) -> bool:
        if self.owner is not None:
            return False
        self.owner = who
        _emit(self.trace, "mutex_lock", self.name)
        return True

    def unlock(self, who: str) -> None:
        if self.owner != who:
            raise RuntimeError(f"{who} unlocks {self.name} held by {self.owner}")
        self.owner = None
        _emit(self.trace, "mutex_unlock", self.name)

    def locked(self) -> bool:
        return self.owner is not None
