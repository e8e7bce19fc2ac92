"""Physical memory as the TDX module sees it: the PAMT.

The Physical Address Metadata Table has one entry per page the module may use: its page type,
its owner (the TDR of the TD that holds it) and BEPOCH, the TD epoch at which a blocked page was
blocked. Every entry is also a host-priority try-lock, which is how the module locks the TDR,
a TDVPR or a single physical page ([M15-PAMT]: module 1.5.01
`src/common/memory_handlers/pamt_manager.h`; the lock kinds: [M15] `tdx_locks.h`).

Entries are created on first use; a page with no entry is PT_NDA.
"""

from __future__ import annotations

from enum import IntEnum

from .locks import SharexHpLock

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_2M = 1 << 21
# The KeyID sits above the physical address bits (MKTME). We model 46 physical address bits, so
# a PA with KeyID k is pa | k << 46 (kernel: `tdh_phymem_page_wbinvd_hkid`, `set_hkid_to_hpa`).
KEYID_SHIFT = 46
PA_MASK = (1 << KEYID_SHIFT) - 1


class PageType(IntEnum):
    """PAMT page types ([M15-PAMT]; 2 unused, 7 reserved; PT_PAMT, [M20], only with Dynamic
    PAMT)."""

    PT_NDA = 0
    PT_RSVD = 1
    PT_REG = 3
    PT_TDR = 4
    PT_TDCX = 5
    PT_TDVPR = 6
    PT_EPT = 8
    PT_PAMT = 15


# The members as plain names, as the module's C code spells them. Hot paths use these:
# on Python 3.11 `PageType.PT_NDA` goes through `EnumType.__getattr__` (about 5x a global).
PT_NDA, PT_RSVD, PT_REG, PT_TDR, PT_TDCX, PT_TDVPR, PT_EPT, PT_PAMT = PageType


class PamtEntry:
    __slots__ = ("pfn", "pt", "owner", "bepoch", "lock")

    def __init__(self, pfn: int):
        self.pfn = pfn
        self.pt = PT_NDA
        self.owner = 0  # PA of the owning TD's TDR; 0 for none
        self.bepoch = 0
        self.lock = SharexHpLock(f"PAMT[{pfn << PAGE_SHIFT:#x}]")

    def __repr__(self) -> str:
        return f"PamtEntry({self.pfn << PAGE_SHIFT:#x}, {self.pt.name}, owner={self.owner:#x})"


class Pamt2MEntry:
    """A PAMT_2M entry as Dynamic PAMT sees it (module 2.0 `pamt_manager.h`, [M20]): PT_NDA
    (no PAMT_4K for this range), PT_PAMT (a non-leaf node naming the two host pages that hold
    the range's 512 PAMT_4K entries) or a 2 MB leaf (PT_REG, owner = TDR). Its lock is the
    2 MB-granular lock PAMT.ADD/REMOVE take exclusively ([M20-PAMT-ADD], [V3-CL])."""

    __slots__ = ("index", "pt", "owner", "page0", "page1", "bepoch", "lock")

    def __init__(self, index: int):
        self.index = index
        self.pt = PT_NDA
        self.owner = 0
        self.page0 = self.page1 = 0
        self.bepoch = 0
        self.lock = SharexHpLock(f"PAMT_2M[{index << 21:#x}]")

    @property
    def pages(self) -> tuple[int, int]:
        return (self.page0, self.page1)

    def __repr__(self) -> str:
        return f"Pamt2MEntry({self.index << 21:#x}, {self.pt.name})"


class Pamt:
    """PAMT over one TDMR of `size` bytes starting at `base`; `reserved` pages are PT_RSVD.

    `ranges` holds the PAMT_2M entries that are not plain PT_NDA (2 MB leaves, and with Dynamic
    PAMT the PT_PAMT nodes); `pamt_pages` is the Dynamic PAMT PAMT_PAGE_BITMAP, as the set of
    pfns currently used as PAMT_4K pages ([V6-02], [M20-PAMT-ADD])."""

    def __init__(self, base: int, size: int, reserved: tuple[int, ...] = ()):
        if base % PAGE_2M or size % PAGE_2M or size <= 0:
            raise ValueError("a TDMR must be 2 MiB aligned and a positive multiple of 2 MiB")
        self.base = base
        self.size = size
        self.end = base + size
        self.first_pfn = base >> PAGE_SHIFT
        self.end_pfn = (base + size) >> PAGE_SHIFT
        self.entries: dict[int, PamtEntry] = {}
        self.ranges: dict[int, Pamt2MEntry] = {}
        self.pamt_pages: set[int] = set()
        for pa in reserved:
            self.entry(pa >> PAGE_SHIFT).pt = PT_RSVD

    def covers(self, pa: int) -> bool:
        return self.base <= pa < self.end

    def entry(self, pfn: int) -> PamtEntry:
        e = self.entries.get(pfn)
        if e is None:
            e = self.entries[pfn] = PamtEntry(pfn)
        return e

    def range_entry(self, pa: int) -> Pamt2MEntry:
        """The PAMT_2M entry of the 2 MB range holding `pa` (created on first use)."""
        idx = pa >> 21
        r = self.ranges.get(idx)
        if r is None:
            r = self.ranges[idx] = Pamt2MEntry(idx)
        return r

    def range_pt(self, pa: int) -> PageType:
        r = self.ranges.get(pa >> 21)
        return PT_NDA if r is None else r.pt

    def pages_in_use_4k(self, pa: int) -> int:
        """How many 4K pages of `pa`'s 2 MB range are assigned (the count a PT_PAMT node keeps,
        [M20]: module 2.0 `pamt_manager.h`, a 10-bit page count)."""
        first = (pa >> 21) << 9
        n = 0
        for pfn in range(first, first + 512):
            e = self.entries.get(pfn)
            if e is not None and e.pt not in (PT_NDA, PT_RSVD):
                n += 1
        return n

    def page_type(self, pa: int) -> PageType:
        e = self.entries.get(pa >> PAGE_SHIFT)
        return PT_NDA if e is None else e.pt

    def owned_by(self, tdr_pa: int) -> list[PamtEntry]:
        return [e for e in self.entries.values() if e.owner == tdr_pa and e.pt != PT_NDA]

    def in_use(self) -> list[PamtEntry]:
        """Every page the module considers assigned (not NDA, not RSVD)."""
        return [e for e in self.entries.values() if e.pt not in (PT_NDA, PT_RSVD)]
