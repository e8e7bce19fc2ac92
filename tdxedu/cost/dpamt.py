"""Where the step engine's pages land on a Dynamic PAMT host, in closed form, for the bulk
engine (`bulk.BulkTd(dynamic_pamt=True)`).

On a DPAMT host ([V6-CL]) every page given to the module first takes a reference on its 2 MB
range; the first reference of a range issues TDH.PHYMEM.PAMT.ADD with a pair of pages
(`tdx_pamt_get`, [V6-05], [V6-06]), and the last put issues TDH.PHYMEM.PAMT.REMOVE. Those
pairs come out of the same lowest-first host allocator, so they shift every later page:

* control pages (`tdx_alloc_control_page`, [V6-03]: TDR, TDCS, then per vCPU TDVPR and TDCX)
  allocate the pair themselves, right after the page that opened a new range;
* S-EPT and guest pages are mapped under mmu_lock and take the pair from vCPU 0's PAMT cache,
  topped up to 10 pages before every fault ([V6-09] `tdx_topup_pamt_cache`): the first fault
  allocates 10 cache pages, and a fault that opened a range makes the next top-up allocate 2.

The build never frees a page, so the allocator only moves forward and the referenced pages
cover a contiguous run of 2 MB ranges. In the memory phase the k-th referenced page (S-EPT
pages and guest pages in GPA order, as `bulk.py` counts them) of fault s sits at
``M0 + 10 + k + 2 * E(s)``, where E(s) counts the ranges opened by faults before s. E steps up
by one at fault ``J[e+1] = 1 + Kinv(512 * (R0 + e + 1) - M0 - 10 - 2 * e)``, computed for all
e at once. Only the "vcpu-cache" policy (v6) is laid out here.
"""

from __future__ import annotations

import numpy as np

PAIR = 2  # TDX_DPAMT_ENTRY_PAGE_CNT
CACHE_TARGET = 10  # PT64_ROOT_MAX_LEVEL x 2 ([V6-09])
RANGE = 512  # 4K pages per 2 MB range


def tables_through(chunk):
    """S-EPT pages allocated up to and including those of 2 MiB chunk `chunk` (as in
    `bulk.tables_through`; repeated here because `bulk` imports this module)."""
    return (chunk + 1) + (chunk // 512 + 1) + (chunk // (512 * 512) + 1)


def k_of(t):
    """Referenced memory-phase allocations up to and including guest page t (0-based):
    its S-EPT pages so far plus t + 1 guest pages, minus one (an index)."""
    return t + tables_through(t // RANGE)


def k_inverse(x):
    """Smallest t >= 0 with k_of(t) >= x (array ok)."""
    x = np.asarray(x, dtype=np.int64)
    t = np.maximum(0, ((x - 3) * 512) // 513)
    for _ in range(6):  # k_of has slope 1 + 1/512 + 1/2^18 + ...: step by the shortfall
        t = np.maximum(0, t + ((x - k_of(t)) * 511) // 512)
    for _ in range(64):
        too_low = k_of(t) < x
        too_high = (t > 0) & (k_of(np.maximum(t - 1, 0)) >= x)
        if not (too_low.any() or too_high.any()):
            return t
        t = t + too_low - too_high
    raise AssertionError("k_inverse did not converge")


class DpamtLayout:
    """Frames of every page the step engine allocates while building a TD on a DPAMT host
    (the order of `tdxedu.scenarios.td.RunningTd._build`), host page 1 first."""

    def __init__(self, pages: int, vcpus: int, tdcs_pages: int, tdcx_per_vcpu: int,
                 first: int = 1):
        bump, last_range = first, -1
        control = []  # TDR, TDCS..., then per vCPU: TDVPR, TDCX...
        for _ in range(1 + tdcs_pages + vcpus * (1 + tdcx_per_vcpu)):
            control.append(bump)
            if bump // RANGE > last_range:  # PAMT.ADD with a freshly allocated pair
                last_range = bump // RANGE
                bump += PAIR
            bump += 1
        self.control = np.array(control, dtype=np.int64)
        self.tdr_pfn = int(control[0])
        self.tdcs_pfns = self.control[1:1 + tdcs_pages]
        per = 1 + tdcx_per_vcpu
        self.vcpu_frames = self.control[1 + tdcs_pages:].reshape(vcpus, per)  # TDVPR, TDCX..
        self.pages = pages
        self.m0, self.r0 = bump, last_range
        self.base = bump + CACHE_TARGET  # the first fault's top-up
        n_jumps = (self.base + int(k_of(pages - 1)) + PAIR * (pages // (RANGE - 8) + 2)) \
            // RANGE - self.r0 + 2
        e = np.arange(n_jumps, dtype=np.int64)
        jumps = 1 + k_inverse(RANGE * (self.r0 + e + 1) - self.base - PAIR * e)
        self.jumps = jumps[jumps <= pages - 1]  # fault s sees E(s) = #jumps <= s

    def opened_before(self, s):
        """E(s): 2 MB ranges opened by the memory-phase faults before fault s."""
        return np.searchsorted(self.jumps, s, side="right")

    def frame(self, k, s):
        return self.base + k + PAIR * self.opened_before(s)

    def guest_pfns(self, lo: int, hi: int) -> np.ndarray:
        i = np.arange(lo, hi, dtype=np.int64)
        return self.frame(k_of(i), i)

    def gap_frames(self) -> np.ndarray:
        """The memory phase's unreferenced frames: the first top-up's 10 cache pages, then
        the 2 pages each later top-up allocates right before the fault after a range was
        opened (the pair it replaces went to PAMT.ADD). Everything else from `m0` to
        `end_pfn` is an S-EPT or guest page."""
        e = np.arange(1, len(self.jumps) + 1, dtype=np.int64)
        first = self.base + k_of(self.jumps - 1) + 1 + PAIR * e  # first page of fault J_e
        refills = np.stack([first - 2, first - 1], axis=1).ravel()
        return np.concatenate([np.arange(self.m0, self.base, dtype=np.int64), refills])

    def ranges_opened(self) -> int:
        """2 MB ranges holding a PAMT reference after the build (= PAMT.ADDs issued)."""
        last = int(self.guest_pfns(self.pages - 1, self.pages)[0])
        return last // RANGE - self.tdr_pfn // RANGE + 1

    @property
    def end_pfn(self) -> int:
        """One past the last frame the build allocated (the last guest page: a range it
        opened is refilled only by a next fault, and there is none)."""
        return int(self.guest_pfns(self.pages - 1, self.pages)[0]) + 1


__all__ = ["DpamtLayout", "k_of", "k_inverse", "PAIR", "CACHE_TARGET"]
