"""Host-kernel locks that *wait* (unlike the TDX module's try-locks).

Written as generators: `yield from kvm.mmu_lock.write_lock(me)` sleeps (yields `WaitUntil`)
until the lock is free, so the scheduler runs someone else. `kvm->mmu_lock` is an rwlock on
x86 (KVM_HAVE_MMU_RWLOCK); `kvm->lock`, `vcpu->mutex` and `pamt_lock` are a mutex / spinlock.
"""

from __future__ import annotations

from ..trace import WaitUntil


class RwLock:
    __slots__ = ("name", "readers", "writer")

    def __init__(self, name: str):
        self.name = name
        self.readers: list[str] = []
        self.writer: str | None = None

    def read_lock(self, who: str):
        if self.writer is not None:
            yield WaitUntil(lambda: self.writer is None, f"{self.name} for read")
        self.readers.append(who)

    def write_lock(self, who: str):
        if self.writer is not None or self.readers:
            yield WaitUntil(lambda: self.writer is None and not self.readers,
                            f"{self.name} for write")
        self.writer = who

    def read_unlock(self, who: str) -> None:
        self.readers.remove(who)

    def write_unlock(self, who: str) -> None:
        if self.writer != who:
            raise RuntimeError(f"{who} unlocks {self.name} held by {self.writer}")
        self.writer = None

    def held_for_write(self, who: str | None = None) -> bool:
        return self.writer is not None and (who is None or self.writer == who)

    def held(self) -> bool:
        return self.writer is not None or bool(self.readers)


class Mutex:
    __slots__ = ("name", "owner")

    def __init__(self, name: str):
        self.name = name
        self.owner: str | None = None

    def lock(self, who: str):
        if self.owner is not None:
            yield WaitUntil(lambda: self.owner is None, self.name)
        self.owner = who

    def trylock(self, who: str) -> bool:
        if self.owner is not None:
            return False
        self.owner = who
        return True

    def unlock(self, who: str) -> None:
        if self.owner != who:
            raise RuntimeError(f"{who} unlocks {self.name} held by {self.owner}")
        self.owner = None

    def locked(self) -> bool:
        return self.owner is not None
