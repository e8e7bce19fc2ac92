"""The host page allocator: every page KVM hands to the TDX module comes from here and must
come back (nothing is silently lost).

Pages are 4 KiB physical addresses inside the module's TDMR, handed out lowest first so runs
are deterministic. A page returned while the TDX module still owns it, or still has dirty
cache lines under a private KeyID, is recorded as a bug rather than accepted silently.
"""

from __future__ import annotations

from ..tdx.pamt import PAGE_SIZE, PT_NDA


class HostPageAllocator:
    def __init__(self, module, first: int | None = None):
        self.module = module
        pamt = module.pamt
        # Page 0 is never handed out (the kernel reserves it; 0 also means "no page" here).
        start = max(pamt.base, PAGE_SIZE) if first is None else first
        self._next = start
        self._end = pamt.base + pamt.size
        self._free: list[int] = []
        self.allocated: dict[int, str] = {}  # pa -> what it was allocated for
        self.errors: list[str] = []
        self.total_allocs = 0

    def alloc_page(self, what: str = "") -> int:
        if self._free:
            pa = self._free.pop()
        else:
            if self._next >= self._end:
                raise MemoryError("host allocator: out of TDX-usable memory")
            pa = self._next
            self._next += PAGE_SIZE
        self.allocated[pa] = what
        self.total_allocs += 1
        return pa

    def free_page(self, pa: int) -> None:
        if pa not in self.allocated:
            self.errors.append(f"free of page {pa:#x} that was not allocated (double free?)")
            return
        pt = self.module.pamt.page_type(pa)
        if pt != PT_NDA:
            self.errors.append(f"page {pa:#x} freed while the TDX module owns it ({pt.name})")
        keyid = self.module.has_dirty_lines(pa)
        if keyid is not None and keyid != 0:
            self.errors.append(f"page {pa:#x} freed with dirty cache lines under KeyID {keyid}")
        del self.allocated[pa]
        self._free.append(pa)

    def leak(self, pa: int) -> None:
        """KVM gives up on a page on purpose (e.g. reclaim failed): it stays allocated."""

    @property
    def in_use(self) -> int:
        return len(self.allocated)
