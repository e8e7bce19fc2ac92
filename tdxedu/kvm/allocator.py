"""The host page allocator: every page KVM hands to the TDX module comes from here and must
come back (nothing is silently lost).

Pages are 4 KiB physical addresses inside the module's TDMR, handed out lowest first so runs
are deterministic. Giving a page back (`free_page`, the kernel's `__free_page`) makes it
reusable by anyone on the host, so what it still holds is checked there and a bug is
recorded (never accepted silently), each under a named invariant id:

* ``pg-double-free``: the page was not allocated;
* ``pg-owned``: the TDX module still owns it (PAMT type not PT_NDA: RECLAIM/REMOVE missing);
* ``pg-dirty-keyid``: cache lines under a private KeyID are still dirty (no
  TDH.PHYMEM.PAGE.WBINVD with that KeyID, and no CACHE.WB that wrote the KeyID back): their
  later write-back would overwrite whatever the next user put there ([K616]
  tdh_phymem_page_wbinvd_hkid / _tdr);
* ``pg-td-data``: on a CPU with X86_BUG_TDX_PW_MCE the memory still holds integrity-protected
  TD data (no MOVDIR64B reset after the last write-back): a partial write by the next user
  takes a machine check ([AH-clear]: `tdx_quirk_reset_page` resets exactly on those CPUs).
"""

from __future__ import annotations

from ..tdx.pamt import PAGE_SIZE, PT_NDA


class HostPageAllocator:
    def __init__(self, module, first: int | None = None, *, pw_mce: bool = True):
        self.module = module
        self.pw_mce = pw_mce  # the CPU has X86_BUG_TDX_PW_MCE (SPR, EMR)
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
            self.errors.append(f"pg-double-free: free of page {pa:#x} that was not allocated")
            return
        pt = self.module.pamt.page_type(pa)
        if pt != PT_NDA:
            self.errors.append(f"pg-owned: page {pa:#x} freed while the TDX module owns it "
                               f"({pt.name})")
        keyid = self.module.has_dirty_lines(pa)
        if keyid is not None and keyid != 0:
            self.errors.append(f"pg-dirty-keyid: page {pa:#x} freed with dirty cache lines "
                               f"under KeyID {keyid}")
        elif self.pw_mce and pt == PT_NDA:
            keyid = self.module.holds_td_data(pa)
            if keyid is not None:
                self.errors.append(f"pg-td-data: page {pa:#x} freed still holding TD data "
                                   f"under KeyID {keyid} (no MOVDIR64B reset on an "
                                   "X86_BUG_TDX_PW_MCE CPU)")
        del self.allocated[pa]
        self._free.append(pa)

    def leak(self, pa: int) -> None:
        """KVM gives up on a page on purpose (e.g. reclaim failed): it stays allocated."""

    @property
    def in_use(self) -> int:
        return len(self.allocated)
