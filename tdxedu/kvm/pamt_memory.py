"""PAMT memory in bytes: static PAMT vs Dynamic PAMT for a host of any size and a set of TDs.

Figures and rules (the Dynamic PAMT series: [RFC-CL], [V6-CL] and its patches; [LINUX-DOC]):

* Every PAMT entry is 16 bytes, at every level [M15-PAMT]. Static PAMT: PAMT_4K (one
  entry per 4 KiB), PAMT_2M, PAMT_1G for all TDX memory, from module init ("0.4 %", ~1/256).
  Computed exactly (no per-TDMR rounding to 4 KiB), per TiB of TDX memory.
* Dynamic PAMT keeps PAMT_2M and PAMT_1G, replaces PAMT_4K with a 1-bit-per-4 KiB bitmap
  [V6-02], and the kernel adds `pamt_refcounts`: 4 bytes per 2 MiB of [0, max_pfn) [V6-04]
  (worst case, a 52-bit address space: 8 GiB [V6-CL]).
* On demand, one 2 MiB range costs one page pair, 2 x 4 KiB = 8 KiB (512 x 16 B), as soon as one
  4 KiB page in it is given to the module at 4 KiB, until the last one is reclaimed ([V6-03],
  [V6-05]).
* A TD's DPAMT cost: its 4K-mapped guest memory (1/256 of it), its S-EPT pages (packed into
  covered ranges, or each alone in a range: the best and the worst case) and its
  control pages (TDR, TDCS pages, per vCPU TDVPR + TDCX). 2M-mapped guest memory needs no
  pair ([SEAN-V5-29]).

`v6_cover_letter_table()` reproduces the v6 cover letter's table, which uses the rounded
ratios 0.4 % / 0.004 % of memory, GB = 10^9 bytes of memory but 2^30 for the worst-case
refcounts, and two decimals cut off (not rounded): see its docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
PAGE_4K, PAGE_2M, PAGE_1G = 4 * KiB, 2 * MiB, GiB
PAMT_ENTRY_SIZE = 16
PAMT_PAIR_BYTES = 2 * PAGE_4K  # TDX_DPAMT_ENTRY_PAGE_CNT pages per 2 MiB range
REFCOUNT_BYTES = 4  # atomic_t per 2 MiB
MAX_PA_BITS = 52  # worst case for the refcount array [V6-CL]
MAPPINGS = ("4k", "2m")
SEPT_PLACEMENTS = ("packed", "spread")


def _size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of bytes, got {type(value).__name__}")
    if value < 0 or value % PAGE_4K:
        raise ValueError(f"{name} must be a non-negative multiple of 4 KiB, got {value}")
    return value


@dataclass(frozen=True)
class PamtFootprint:
    """Bytes per component; `total` sums them."""

    pamt_4k: int = 0
    pamt_2m: int = 0
    pamt_1g: int = 0
    bitmap: int = 0
    refcounts: int = 0
    pairs: int = 0  # Dynamic PAMT page pairs installed on demand

    @property
    def total(self) -> int:
        return (self.pamt_4k + self.pamt_2m + self.pamt_1g + self.bitmap + self.refcounts
                + self.pairs)


def static_pamt(tdx_memory: int) -> PamtFootprint:
    """Static PAMT for `tdx_memory` bytes of TDX memory (levels as [V6-01] sizes them; "about
    0.4 %" in [RFC-CL], "~1/256th" in [LINUX-DOC])."""
    m = _size("tdx_memory", tdx_memory)
    return PamtFootprint(pamt_4k=m // PAGE_4K * PAMT_ENTRY_SIZE,
                         pamt_2m=m // PAGE_2M * PAMT_ENTRY_SIZE,
                         pamt_1g=m // PAGE_1G * PAMT_ENTRY_SIZE)


def refcount_bytes(max_pa: int) -> int:
    """`pamt_refcounts`: 4 B per 2 MiB of [0, max_pfn) (v6 dropped the hole optimisation)."""
    return -(-_size("max_pa", max_pa) // PAGE_2M) * REFCOUNT_BYTES


def dpamt_static(tdx_memory: int, max_pa: int | None = None) -> PamtFootprint:
    """Dynamic PAMT before any TD: bitmap + PAMT_2M + PAMT_1G (+ refcounts up to `max_pa`,
    default: the end of TDX memory)."""
    m = _size("tdx_memory", tdx_memory)
    return PamtFootprint(pamt_2m=m // PAGE_2M * PAMT_ENTRY_SIZE,
                         pamt_1g=m // PAGE_1G * PAMT_ENTRY_SIZE,
                         bitmap=m // PAGE_4K // 8,
                         refcounts=refcount_bytes(m if max_pa is None else max_pa))


@dataclass(frozen=True)
class TdSpec:
    """One TD: guest `memory` bytes mapped at `mapping` ("4k" today, "2m" with S-EPT huge
    pages), `vcpus`, and where its S-EPT pages land (`"packed"` into ranges already covered,
    `"spread"` one per 2 MiB range)."""

    memory: int
    mapping: str = "4k"
    vcpus: int = 1
    sept_placement: str = "packed"
    tdcs_pages: int = 6
    tdcx_per_vcpu: int = 5

    def __post_init__(self):
        _size("memory", self.memory)
        if self.mapping not in MAPPINGS:
            raise ValueError(f"mapping must be one of {MAPPINGS}, got {self.mapping!r}")
        if self.sept_placement not in SEPT_PLACEMENTS:
            raise ValueError(f"sept_placement must be one of {SEPT_PLACEMENTS}, "
                             f"got {self.sept_placement!r}")
        if isinstance(self.vcpus, bool) or not isinstance(self.vcpus, int) or self.vcpus < 1:
            raise ValueError(f"vcpus must be an int >= 1, got {self.vcpus!r}")

    def sept_pages(self) -> int:
        """S-EPT pages below the root (the root is TDCS page 3): one table per 2 MiB for 4K
        leaves, one per 1 GiB above that, one per 512 GiB above that."""
        n = 0
        span = PAGE_2M if self.mapping == "4k" else PAGE_1G
        while True:
            tables = -(-self.memory // span)
            n += tables
            if tables <= 1:
                return n
            span <<= 9

    def control_pages(self) -> int:
        return 1 + self.tdcs_pages + self.vcpus * (1 + self.tdcx_per_vcpu)


def _pairs(pages: int, placement: str) -> int:
    return pages if placement == "spread" else -(-pages // 512)


def dpamt_td_bytes(td: TdSpec) -> dict[str, int]:
    """On-demand DPAMT bytes for one TD, by what the pairs cover."""
    guest = 0 if td.mapping == "2m" else -(-td.memory // PAGE_2M) * PAMT_PAIR_BYTES
    sept = _pairs(td.sept_pages(), td.sept_placement) * PAMT_PAIR_BYTES
    control = _pairs(td.control_pages(), td.sept_placement) * PAMT_PAIR_BYTES
    return {"guest": guest, "sept": sept, "control": control}


def host_pamt_bytes(tdx_memory: int, tds=(), *, dynamic: bool, max_pa: int | None = None):
    """PAMT memory of a host running `tds` (TdSpec list). Static PAMT does not depend on TDs."""
    if not dynamic:
        return static_pamt(tdx_memory)
    base = dpamt_static(tdx_memory, max_pa)
    pairs = 0
    for td in tds:
        if not isinstance(td, TdSpec):
            raise TypeError(f"tds must be TdSpec objects, got {type(td).__name__}")
        pairs += sum(dpamt_td_bytes(td).values())
    return PamtFootprint(base.pamt_4k, base.pamt_2m, base.pamt_1g, base.bitmap,
                         base.refcounts, pairs)


def module_pamt_pair_bytes(module) -> int:
    """The pairs a simulated module holds right now, in bytes (ties the model to the formula)."""
    from ..tdx.pamt import PageType

    return sum(PAMT_PAIR_BYTES for r in module.pamt.ranges.values() if r.pt == PageType.PT_PAMT)


def _cut2(x: float) -> float:
    return math.floor(x * 100 + 1e-9) / 100


def v6_cover_letter_table() -> list[dict]:
    """The v6 cover letter's table [V6-CL]: TDX on, no TDs, refcounts not
    optimized. The letter's convention, reproduced: PAMT = 0.4 % and DPAMT = 0.004 % of the
    machine's size in GiB, plus the refcounts (4 B per 2 MiB of [0, max_pfn)) in GiB, both cut
    (not rounded) to two decimals. Rows: 256 GB and 2 TB machines, max_pfn at the end of
    memory or at the maximum physical address (52 bits). `ratio` = PAMT / DPAMT unrounded
    (the letter's "100x / 99x smaller" ignore the refcounts; with them it is ~95x)."""
    rows = []
    for machine_gib in (256, 2048):
        for at_max_pa in (False, True):
            max_pa = (1 << MAX_PA_BITS) if at_max_pa else machine_gib * GiB
            pamt = machine_gib * 0.004
            dpamt = machine_gib * 0.00004 + refcount_bytes(max_pa) / GiB
            rows.append({"machine_gb": machine_gib, "max_pfn_at_max_pa": at_max_pa,
                         "pamt_gb": _cut2(pamt), "dpamt_gb": _cut2(dpamt),
                         "ratio": pamt / dpamt})
    return rows
