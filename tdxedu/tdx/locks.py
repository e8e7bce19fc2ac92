"""The TDX module's try-locks: one atomic attempt, never a wait.

A failed acquisition makes the SEAMCALL unwind and return TDX_OPERAND_BUSY with the operand id
of the resource ([M15], module 1.5.01 `src/common/helpers/tdx_locks.h`).
Holders are recorded by name so a lesson can show *who* holds what.
"""

from __future__ import annotations


class SharexLock:
    """Shared/exclusive lock (S-EPT tree lock, TD epoch lock): readers count or one writer."""

    __slots__ = ("name", "readers", "writer")

    def __init__(self, name: str):
        self.name = name
        self.readers: list[str] = []
        self.writer: str | None = None

    def try_shared(self, who: str, host: bool = True) -> bool:
        if self.writer is not None:
            return False
        self.readers.append(who)
        return True

    def try_exclusive(self, who: str, host: bool = True) -> bool:
        if self.writer is not None or self.readers:
            return False
        self.writer = who
        return True

    def release_shared(self, who: str) -> None:
        self.readers.remove(who)

    def release_exclusive(self, who: str) -> None:
        assert self.writer == who, (self.name, self.writer, who)
        self.writer = None

    @property
    def free(self) -> bool:
        return self.writer is None and not self.readers

    def holders(self) -> list[str]:
        return [self.writer] if self.writer else list(self.readers)


class SharexHpLock(SharexLock):
    """Sharex lock with a host-priority bit (TDCS OP_STATE, PAMT entries; [M15] `tdx_locks.h`).

    A failed host (SEAMCALL) attempt sets the bit; while it is set, guest (TDCALL) attempts
    fail with TDX_OPERAND_BUSY_HOST_PRIORITY; the next successful host acquire clears it.
    """

    __slots__ = ("host_priority",)

    def __init__(self, name: str):
        super().__init__(name)
        self.host_priority = False

    # The base class's checks written out again (not via super()): several run per SEAMCALL.
    def try_shared(self, who: str, host: bool = True) -> bool:
        if not host and self.host_priority:
            return False
        if self.writer is not None:
            if host:
                self.host_priority = True  # a host attempt failed
            return False
        if host:
            self.host_priority = False  # a host attempt succeeded
        self.readers.append(who)
        return True

    def try_exclusive(self, who: str, host: bool = True) -> bool:
        if not host and self.host_priority:
            return False
        if self.writer is not None or self.readers:
            if host:
                self.host_priority = True
            return False
        if host:
            self.host_priority = False
        self.writer = who
        return True


class EntryLock:
    """The S-EPT entry lock: TDEL (bit 11) plus TDHP host priority (bit 52); one holder.

    Host acquire: set TDEL; if it was set, also set TDHP and fail (BUSY). Success clears TDHP.
    Guest acquire: fail if TDEL was set (BUSY); if acquired while TDHP is set, release and fail
    with BUSY_HOST_PRIORITY. So after a host loses once, guests back off until the host wins,
    which is why KVM's single retry after kicking vCPUs is expected to succeed ([Y4]).
    """

    __slots__ = ("holder", "tdhp")

    def __init__(self):
        self.holder: str | None = None
        self.tdhp = False

    def try_host(self, who: str) -> bool:
        if self.holder is not None:
            self.tdhp = True
            return False
        self.holder = who
        self.tdhp = False
        return True

    def try_guest(self, who: str) -> str:
        """Returns "ok", "busy" or "host_priority"."""
        if self.holder is not None:
            return "busy"
        if self.tdhp:
            return "host_priority"
        self.holder = who
        return "ok"

    def release(self, who: str) -> None:
        assert self.holder == who, (self.holder, who)
        self.holder = None
