"""Host-kernel locks that *wait* (unlike the TDX module's try-locks).

Written as generators: `yield from kvm.mmu_lock.write_lock(me)` sleeps (yields `WaitUntil`)
until the lock is free, so the scheduler runs someone else. `kvm->mmu_lock` is an rwlock on
x86 (KVM_HAVE_MMU_RWLOCK); `kvm->lock`, `vcpu->mutex` and `pamt_lock` are a mutex / spinlock.

Debug checks the kernel runs with CONFIG_PROVE_LOCKING are named checks here, recorded in the
lock's `errors` list (the owner's `debug_errors`, read by the worlds' invariants) rather than
raised: `lockdep_assert_held()` / `lockdep_assert_held_write()` where the kernel asserts a
lock mode ([S-TDX] `remove_external_spte`, `tdp_mmu_next_root`; [K616] `tdx_track`), and
lockdep's "bad unlock balance" for an unlock by a thread that does not hold the lock. Each
message starts with ``lockdep:`` (the rule id check-mutants reports).
"""

from __future__ import annotations

from ..trace import Trace, WaitUntil

SRC = "include/linux/rwlock.h, kernel/locking/mutex.c"


def _emit(trace: Trace | None, op: str, name: str) -> None:
    """Lock operations appear in the trace, so a timeline can draw who held what."""
    if trace is not None and trace.enabled:
        trace.emit(op, name, source=SRC)


def lockdep_report(lock, msg: str) -> None:
    """A lockdep splat: recorded as a named check (or raised when the lock has no owner to
    report to, e.g. a bare lock in a unit test)."""
    text = f"lockdep: {msg}"
    if lock.errors is None:
        raise RuntimeError(text)
    lock.errors.append(text)
    if lock.trace is not None and lock.trace.enabled:
        lock.trace.emit("WARNING", text, source="kernel/locking/lockdep.c")


def _holders(lock) -> str:
    if isinstance(lock, RwLock):
        if lock.writer is not None:
            return f"held for write by {lock.writer}"
        return f"held for read by {', '.join(lock.readers)}" if lock.readers else "not held"
    return f"held by {lock.owner}" if lock.owner is not None else "not held"


def lockdep_assert_held(lock, where: str, who: str | None = None) -> bool:
    """`lockdep_assert_held(lock)`: `who` (or, without it, anyone) holds `lock` in any mode.
    False (and a lockdep report) when not."""
    if isinstance(lock, RwLock):
        ok = lock.writer is not None or bool(lock.readers) if who is None else (
            lock.writer == who or who in lock.readers)
    else:
        ok = lock.owner is not None and (who is None or lock.owner == who)
    if not ok:
        lockdep_report(lock, f"{where}: lockdep_assert_held({lock.name}) failed "
                             f"({_holders(lock)})")
    return ok


def lockdep_assert_held_write(lock: RwLock, where: str, who: str | None = None) -> bool:
    """`lockdep_assert_held_write(lock)`: the rwlock is held for write (by `who`)."""
    ok = lock.writer is not None and (who is None or lock.writer == who)
    if not ok:
        lockdep_report(lock, f"{where}: lockdep_assert_held_write({lock.name}) failed "
                             f"({_holders(lock)})")
    return ok


class RwLock:
    __slots__ = ("name", "readers", "writer", "trace", "errors")

    def __init__(self, name: str, trace: Trace | None = None, errors: list | None = None):
        self.name = name
        self.readers: list[str] = []
        self.writer: str | None = None
        self.trace = trace
        self.errors = errors

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
        if who not in self.readers:
            lockdep_report(self, f"WARNING: bad unlock balance detected! {who} read-unlocks "
                                 f"{self.name} ({_holders(self)})")
            return
        self.readers.remove(who)
        _emit(self.trace, "read_unlock", self.name)

    def write_unlock(self, who: str) -> None:
        if self.writer != who:
            lockdep_report(self, f"WARNING: bad unlock balance detected! {who} write-unlocks "
                                 f"{self.name} ({_holders(self)})")
            return
        self.writer = None
        _emit(self.trace, "write_unlock", self.name)

    def held_for_write(self, who: str | None = None) -> bool:
        return self.writer is not None and (who is None or self.writer == who)

    def held(self) -> bool:
        return self.writer is not None or bool(self.readers)


class Mutex:
    __slots__ = ("name", "owner", "trace", "errors")

    def __init__(self, name: str, trace: Trace | None = None, errors: list | None = None):
        self.name = name
        self.owner: str | None = None
        self.trace = trace
        self.errors = errors

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
            lockdep_report(self, f"WARNING: bad unlock balance detected! {who} unlocks "
                                 f"{self.name} ({_holders(self)})")
            return
        self.owner = None
        _emit(self.trace, "mutex_unlock", self.name)

    def locked(self) -> bool:
        return self.owner is not None
