"""Bulk (numpy) teardown engine: the same TD and the same teardown flows as the step engine
(`tdxedu.scenarios.td.RunningTd` driving `tdxedu.kvm.teardown`), with the TD's pages, S-EPT and
PAMT held as arrays and each flow applied as vectorised transitions. Built for TDs up to
1 TiB (2^28 private 4 KiB pages) in well under 4 GiB: one byte per PAMT entry and one byte
per S-EPT leaf, and every page's physical address computed from the layout, never stored.

What it reproduces exactly (tests/cost/test_bulk_vs_step.py checks it against the step
engine): the per-leaf SEAMCALL counts, the number of all-vCPU kicks, the pages cleared, the
final PAMT page types and owners, the final S-EPT entry states (while the TD survives),
the leaked pages (address and reason, in order), the KVM_BUG_ONs, the HKID state and the
host pages still allocated.

Layout (the step engine's host allocator hands out the lowest free page first; page 0 is
reserved): TDR, the TDCS pages, then per vCPU its TDVPR and TDCX pages (KVM_TDX_INIT_VM,
KVM_TDX_INIT_VCPU), then guest memory in GPA order, each 2 MiB chunk preceded by the S-EPT
pages `_link_tables` adds for it (level 3 at 512 GiB boundaries, level 2 at 1 GiB, level 1
for every 2 MiB) ([K616]; the S-EPT root is TDCS page 3, [M15], so it comes back with the
TDCS pages).

The flows follow `tdxedu.kvm.teardown` ([K616], [RE-P2]) for each policy of
`TEARDOWN_POLICIES`:
runtime removal (BLOCK, TRACK + kick, REMOVE, WBINVD(HKID), clear) while the HKID is
assigned, RECLAIM (+ clear) once it is free; HKID release = VP.FLUSH per still-associated
vCPU, VPFLUSHDONE, CACHE.WB per package, KEY.FREEID; FLUSHVP_NOT_DONE leaves the HKID
assigned and every vCPU, S-EPT and control page leaks ([K616] `tdx_vcpu_free`,
`tdx_vm_destroy`).

`dynamic_pamt=True` builds the TD on a Dynamic PAMT host ([V6-CL], "vcpu-cache" policy): the
PAMT page pairs and vCPU 0's PAMT cache shift the layout (`dpamt.DpamtLayout`), the build
issues one TDH.PHYMEM.PAMT.ADD per 2 MB range it opened (`BulkReport.build_counts`) and the
teardown one TDH.PHYMEM.PAMT.REMOVE per range whose last reference is put; ranges holding a
leaked page keep their pair (`BulkReport.pamt_pairs`).

`stale_vcpus=k` injects a fault for teaching leak accounting: KVM has lost track of k
vCPUs' association (`vcpu->cpu == -1` while the module still counts them associated, the
kind of `cpu_list` corruption fixed in 6.19, [PULL619]), so TDH.VP.FLUSH is skipped
for them and TDH.MNG.VPFLUSHDONE returns TDX_FLUSHVP_NOT_DONE ([M15]
`tdh_mng_vpflushdone.c`).
"""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..kvm.tdx import TEARDOWN_POLICIES
from ..tdx.module import TdxModule
from ..tdx.pamt import PAGE_SHIFT, PageType
from ..tdx.sept import SeptState
from .dpamt import DpamtLayout

_DEFAULTS = inspect.signature(TdxModule.__init__).parameters
TDCS_PAGES = _DEFAULTS["tdcs_pages"].default  # 6 (module 1.5.01 MIN_NUM_TDCS_PAGES)
TDCX_PER_VCPU = _DEFAULTS["tdcx_per_vcpu"].default  # 5
CACHE_WB_ROUNDS = _DEFAULTS["cache_wb_rounds"].default  # 1

L1_PAGES = 512  # 4K pages per 2 MiB S-EPT level-1 table
L2_PAGES = 512 * 512  # per 1 GiB level-2 table
L3_PAGES = 512 * 512 * 512  # per 512 GiB level-3 table
BLOCK = 1 << 22  # pages per vectorised block (4 MiB of uint8 state)

PT_NDA, PT_REG, PT_TDR = int(PageType.PT_NDA), int(PageType.PT_REG), int(PageType.PT_TDR)
PT_TDCX, PT_TDVPR, PT_EPT = int(PageType.PT_TDCX), int(PageType.PT_TDVPR), int(PageType.PT_EPT)
S_FREE, S_MAPPED = int(SeptState.FREE), int(SeptState.MAPPED)
S_NL_MAPPED = int(SeptState.NL_MAPPED)

LEAK_VCPU = "vCPU page: HKID still assigned"
LEAK_SEPT = "S-EPT page: HKID still assigned"
LEAK_CONTROL = "control page: HKID still assigned"
LEAK_NO_HKID = "removal without HKID on a live VM"
BUG_SEPT = "free a private S-EPT page with the HKID assigned"
BUG_NO_HKID = "remove a private SPTE without an HKID"

RUNTIME_LEAVES = ("tdh_mem_range_block", "tdh_mem_track", "tdh_mem_page_remove",
                  "tdh_phymem_page_wbinvd")


def n_chunks(pages: int) -> int:
    return -(-pages // L1_PAGES)


def tables_through(chunk):
    """S-EPT pages allocated up to and including those for 2 MiB chunk `chunk` (array ok):
    one level-1 table per chunk, one level-2 per 512 chunks, one level-3 per 2^18 chunks."""
    return (chunk + 1) + (chunk // 512 + 1) + (chunk // (512 * 512) + 1)


@dataclass
class BulkReport:
    """The bulk engine's answer; field names follow `tdxedu.scenarios.td.TeardownReport`.
    Leaks and bugs are kept compact (runs of page frames per reason, a Counter of
    messages) because a 1 TiB TD can leak half a million S-EPT pages."""

    strategy: str
    counts: dict[str, int]
    hkid_state: str
    host_pages_in_use: int
    cleared_pages: int
    kicks: int
    leaks: list[tuple[str, np.ndarray]] = field(repr=False)
    bugs: Counter
    pamt_pairs: int = 0  # Dynamic PAMT: page pairs still installed (ranges still referenced)
    build_counts: dict = field(default_factory=dict)  # DPAMT: PAMT.ADDs of the build

    @property
    def n_leaked(self) -> int:
        return sum(len(p) for _, p in self.leaks)

    @property
    def ok(self) -> bool:
        return not (self.n_leaked or self.bugs or self.host_pages_in_use)

    def leaked_pages(self) -> list[tuple[int, str]]:
        """As `TeardownReport.leaked_pages`: (physical address, reason), in leak order."""
        return [(int(pfn) << PAGE_SHIFT, why) for why, pfns in self.leaks for pfn in pfns]


class BulkTd:
    """A running TD laid out as the step engine lays it out, all memory mapped and accepted
    (S-EPT leaves MAPPED, PAMT PT_REG), the TD RUNNABLE, every vCPU associated with its CPU.

    Arrays: `pamt_pt` (uint8 page type per host page frame; the owner of every non-NDA,
    non-TDR page is this TD's TDR), `leaf` (uint8 SeptState per private 4K GPA), `tables`
    (uint8 SeptState per S-EPT table entry at levels 1, 2, 3).
    """

    def __init__(self, pages: int, vcpus: int, *, packages: int = 1, clear_pages: bool = True,
                 stale_vcpus: int = 0, dynamic_pamt: bool = False):
        if pages < 1 or vcpus < 1 or packages < 1:
            raise ValueError("need pages >= 1, vcpus >= 1 and packages >= 1")
        if not 0 <= stale_vcpus <= vcpus:
            raise ValueError("stale_vcpus must be between 0 and vcpus")
        self.pages, self.vcpus, self.packages = pages, vcpus, packages
        self.clear_pages = clear_pages
        self.stale_vcpus = stale_vcpus
        per = 1 + TDCX_PER_VCPU
        nc = n_chunks(pages)
        self.n_tables = (nc, -(-nc // 512), -(-nc // (512 * 512)))  # levels 1, 2, 3
        # Dynamic PAMT ([V6-CL], "vcpu-cache" policy): PAMT page pairs and vCPU 0's PAMT
        # cache come from the same allocator and shift every page (`dpamt.DpamtLayout`).
        self.layout = (DpamtLayout(pages, vcpus, TDCS_PAGES, TDCX_PER_VCPU) if dynamic_pamt
                       else None)
        if self.layout is None:
            self.tdr_pfn = 1
            self.tdcs_pfns = np.arange(2, 2 + TDCS_PAGES, dtype=np.int64)
            vbase = 2 + TDCS_PAGES
            self.vcpu_frames = vbase + np.arange(vcpus * per, dtype=np.int64).reshape(vcpus, per)
            self.guest_base = vbase + per * vcpus
            self.end_pfn = self.guest_base + pages + sum(self.n_tables)
        else:
            lay = self.layout
            self.tdr_pfn, self.tdcs_pfns, self.vcpu_frames = lay.tdr_pfn, lay.tdcs_pfns, \
                lay.vcpu_frames
            self.guest_base = lay.base
            self.end_pfn = lay.end_pfn
        self.tdvpr_pfns = self.vcpu_frames[:, 0]
        # State ------------------------------------------------------------------------
        self.pamt_pt = np.zeros(self.end_pfn, dtype=np.uint8)
        self.pamt_pt[self.tdr_pfn] = PT_TDR
        self.pamt_pt[self.tdcs_pfns] = PT_TDCX
        self.pamt_pt[self.vcpu_frames[:, 1:]] = PT_TDCX
        self.pamt_pt[self.tdvpr_pfns] = PT_TDVPR
        if self.layout is None:
            self.pamt_pt[self.guest_base:] = PT_REG
        else:  # guest pages fill [m0, end) but for the PAMT cache pages (and S-EPT, below)
            self.pamt_pt[self.layout.m0:] = PT_REG
            self.pamt_pt[self.layout.gap_frames()] = PT_NDA
        for level in (1, 2, 3):
            self.pamt_pt[self.table_pfns(level)] = PT_EPT
        self.leaf = np.full(pages, S_MAPPED, dtype=np.uint8)
        self.tables = {lv: np.full(n, S_NL_MAPPED, dtype=np.uint8)
                       for lv, n in zip((1, 2, 3), self.n_tables, strict=True)}
        self.gmem_in_use = pages  # guest_memfd pages still allocated
        self.td_alive = True  # the module still has the TD (TDR not reclaimed)
        self.lifecycle = "TD_KEYS_CONFIGURED"
        self.chldcnt = TDCS_PAGES + vcpus * per + sum(self.n_tables) + pages
        self.num_assoc = vcpus  # module: TDCS.num_assoc_vcpus
        self.kvm_cpu_known = np.ones(vcpus, dtype=bool)  # KVM: vcpu->cpu != -1
        self.kvm_cpu_known[:stale_vcpus] = False
        self.destroyed = False

    @classmethod
    def from_size(cls, memory, vcpus: int, **kw) -> BulkTd:
        from ..units import parse_size

        return cls(parse_size(memory) >> PAGE_SHIFT, vcpus, **kw)

    # --- layout ---------------------------------------------------------------------------
    def guest_pfns(self, lo: int, hi: int) -> np.ndarray:
        """Page frames of private pages lo..hi-1 (the guest_memfd page behind each GPA)."""
        if self.layout is not None:
            return self.layout.guest_pfns(lo, hi)
        i = np.arange(lo, hi, dtype=np.int64)
        return self.guest_base + i + tables_through(i // L1_PAGES)

    def table_pfns(self, level: int) -> np.ndarray:
        """Page frames of the S-EPT pages of `level`, in GPA order."""
        step = {1: 1, 2: 512, 3: 512 * 512}[level]
        j = np.arange(0, n_chunks(self.pages), step, dtype=np.int64)
        start = self.guest_base + L1_PAGES * j + np.where(j > 0, tables_through(j - 1), 0)
        # Within a chunk: level 3 (if any), level 2 (if any), level 1.
        off = {3: 0, 2: (j % (512 * 512) == 0).astype(np.int64),
               1: (j % (512 * 512) == 0).astype(np.int64) + (j % 512 == 0)}[level]
        if self.layout is not None:  # same position in the sequence, shifted by the pairs
            return self.layout.frame(start + off - self.guest_base, L1_PAGES * j)
        return start + off

    def all_table_pfns(self) -> np.ndarray:
        """Every S-EPT page's frame, sorted (cached: ~2^19 of them at 1 TiB)."""
        if getattr(self, "_tables_sorted", None) is None:
            self._tables_sorted = np.sort(np.concatenate([self.table_pfns(lv)
                                                          for lv in (1, 2, 3)]))
        return self._tables_sorted

    def table_gpas(self, level: int) -> np.ndarray:
        size = {1: L1_PAGES, 2: L2_PAGES, 3: L3_PAGES}[level] << PAGE_SHIFT
        return np.arange(self.n_tables[level - 1], dtype=np.int64) * size

    def vcpu_pfns(self, v: int) -> np.ndarray:
        """TDCX pages then the TDVPR: the order `tdx_vcpu_free` reclaims (or leaks) them."""
        f = self.vcpu_frames[v]
        return np.concatenate([f[1:], f[:1]])

    def pamt_owner(self, pfn: int) -> int:
        """PAMT owner field: the TDR's PA for a page the TD holds, 0 otherwise."""
        pt = int(self.pamt_pt[pfn]) if pfn < self.end_pfn else PT_NDA
        return 0 if pt in (PT_NDA, PT_TDR) else self.tdr_pfn << PAGE_SHIFT

    # --- teardown -------------------------------------------------------------------------
    def teardown(self, strategy: str = "v6.16") -> BulkReport:
        if strategy not in TEARDOWN_POLICIES:
            raise ValueError(f"unknown teardown strategy {strategy!r}; allowed: "
                             f"{', '.join(TEARDOWN_POLICIES)}")
        if self.destroyed:
            raise ValueError("this TD has already been torn down; build a new BulkTd")
        run = _Run(self, strategy)
        run.go()
        self.destroyed = True
        leaked = sum(len(p) for _, p in run.leaks)
        pairs, build = 0, {}
        if self.layout is not None:
            # No get during teardown: every range whose last reference was put issued one
            # TDH.PHYMEM.PAMT.REMOVE and freed its pair; a leaked page keeps its range's
            # reference, so that range keeps its pair ([V6-06] `tdx_pamt_put`).
            opened = self.layout.ranges_opened()
            held = np.unique(np.concatenate([p >> 9 for _, p in run.leaks])) if run.leaks \
                else np.empty(0, dtype=np.int64)
            pairs = len(held)
            run.counts["tdh_phymem_pamt_remove"] += opened - pairs
            build = {"tdh_phymem_pamt_add": opened}
        return BulkReport(
            strategy=strategy,
            counts={k: v for k, v in run.counts.items() if v},
            hkid_state="leaked (still assigned)" if run.hkid_assigned else "free",
            host_pages_in_use=leaked + self.gmem_in_use + 2 * pairs,
            cleared_pages=run.cleared,
            kicks=run.kicks,
            leaks=run.leaks,
            bugs=run.bugs,
            pamt_pairs=pairs,
            build_counts=build,
        )


class _Run:
    """One teardown: the order of file closes and hooks of `RunningTd._teardown` and
    `kvm_destroy_vm` ([K616], [SC-free], [PB-vmdestroy]), with the per-page work vectorised."""

    def __init__(self, td: BulkTd, strategy: str):
        self.td, self.strategy = td, strategy
        self.counts: Counter = Counter()
        self.bugs: Counter = Counter()
        self.leaks: list[tuple[str, np.ndarray]] = []
        self.cleared = 0
        self.kicks = 0
        self.hkid_assigned = True
        self.vm_dead = False
        self.vcpu_reclaimed = np.zeros(td.vcpus, dtype=bool)

    def go(self) -> None:
        s = self.strategy
        if s == "terminate-vm":  # KVM_TDX_TERMINATE_VM: kvm_vm_dead, then release ([SC-Mar25])
            self.vm_dead = True
            self.release_hkid(flush_vcpus=True)
        if s == "v19-notifier":  # MMU-notifier release (v19, [K-Mar24])
            self.release_hkid(flush_vcpus=True)
        self.gmem_release()  # Stage C; its kvm_put_kvm is the last: kvm_destroy_vm
        self.destroy_vm()

    def leak(self, why: str, pfns) -> None:
        pfns = np.asarray(pfns, dtype=np.int64)
        if len(pfns):
            self.leaks.append((why, pfns))

    def clear(self, n: int) -> None:
        if self.td.clear_pages:
            self.cleared += n

    # tdx_mmu_release_hkid ([K616]) --------------------------------------------------------
    def release_hkid(self, flush_vcpus: bool) -> None:
        td = self.td
        if not self.hkid_assigned:
            return
        if flush_vcpus:
            self.flush_vcpus(np.arange(td.vcpus))
        self.counts["tdh_mng_vpflushdone"] += 1
        if td.num_assoc:  # TDX_FLUSHVP_NOT_DONE: KVM silently leaves the HKID assigned
            return
        td.lifecycle = "TD_BLOCKED"
        self.counts["tdh_phymem_cache_wb"] += td.packages * CACHE_WB_ROUNDS
        self.counts["tdh_mng_key_freeid"] += 1
        td.lifecycle = "TD_TEARDOWN"
        self.hkid_assigned = False

    def flush_vcpus(self, which: np.ndarray) -> None:
        """`tdx_flush_vp_on_cpu` for each: skipped where KVM has `vcpu->cpu == -1`."""
        td = self.td
        known = which[td.kvm_cpu_known[which]]
        self.counts["tdh_vp_flush"] += len(known)
        td.num_assoc -= len(known)
        td.kvm_cpu_known[known] = False

    # kvm_gmem_release ([K616] tdx_sept_remove_private_spte) ---------------------------------
    def gmem_release(self) -> None:
        td = self.td
        for lo in range(0, td.pages, BLOCK):
            hi = min(td.pages, lo + BLOCK)
            mapped = td.leaf[lo:hi] == S_MAPPED
            n = int(np.count_nonzero(mapped))
            if not n:
                continue
            pfns = _PfnSet(td, lo, hi) if n == hi - lo else td.guest_pfns(lo, hi)[mapped]
            if self.hkid_assigned:
                # BLOCK -> TRACK + kick all vCPUs -> REMOVE -> WBINVD(HKID) -> clear
                for leaf in RUNTIME_LEAVES:
                    self.counts[leaf] += n
                self.kicks += n
                td.leaf[lo:hi][mapped] = S_FREE
                _set_pt(td, pfns, PT_NDA)
                td.chldcnt -= n
                self.clear(n)
            elif self.vm_dead or self.strategy == "v19-notifier":
                # HKID already free: RECLAIM -> clear (the S-EPT entry is left as it is)
                self.counts["tdh_phymem_page_reclaim"] += n
                _set_pt(td, pfns, PT_NDA)
                td.chldcnt -= n
                self.clear(n)
            else:  # 6.16: KVM_BUG_ON, the page leaks
                self.bugs[BUG_NO_HKID] += n
                self.leak(LEAK_NO_HKID, pfns.array() if isinstance(pfns, _PfnSet) else pfns)
                continue
            td.gmem_in_use -= n

    # kvm_destroy_vm ([SC-free], [PB-vmdestroy]) -------------------------------------------
    def destroy_vm(self) -> None:
        td, s = self.td, self.strategy
        if s in ("v6.16", "terminate-vm"):
            self.release_hkid(flush_vcpus=True)  # vm_pre_destroy
        for v in range(td.vcpus):  # kvm_destroy_vcpus -> tdx_vcpu_free
            if s == "flush-at-vcpu-free" and self.hkid_assigned:
                self.flush_vcpus(np.array([v]))
            else:
                self.vcpu_free(v)
        if s == "flush-at-vcpu-free":
            self.release_hkid(flush_vcpus=False)
            for v in range(td.vcpus):
                if not self.vcpu_reclaimed[v]:
                    self.vcpu_free(v)
        # kvm_mmu_uninit_vm: S-EPT pages in (level, GPA) order
        for level in (1, 2, 3):
            pfns = td.table_pfns(level)
            if self.hkid_assigned:
                self.bugs[BUG_SEPT] += len(pfns)
                self.leak(LEAK_SEPT, pfns)
            else:
                self.reclaim(pfns)
        # vm_destroy -> tdx_reclaim_td_control_pages
        if self.hkid_assigned:
            self.leak(LEAK_CONTROL, [*td.tdcs_pfns, td.tdr_pfn])
        else:
            self.reclaim(td.tdcs_pfns)
            assert td.chldcnt == 0  # else TDX_TD_ASSOCIATED_PAGES_EXIST on the TDR
            self.reclaim([td.tdr_pfn])
            self.counts["tdh_phymem_page_wbinvd"] += 1  # WBINVD(TDR, global KeyID)
            td.td_alive = False
            td.lifecycle = None

    def vcpu_free(self, v: int) -> None:
        if self.hkid_assigned:
            self.leak(LEAK_VCPU, self.td.vcpu_pfns(v))
        else:
            self.reclaim(self.td.vcpu_pfns(v))
        self.vcpu_reclaimed[v] = True

    def reclaim(self, pfns) -> None:
        """`tdx_reclaim_page` on each: TDH.PHYMEM.PAGE.RECLAIM, clear, free to the host."""
        td = self.td
        pfns = np.asarray(pfns, dtype=np.int64)
        self.counts["tdh_phymem_page_reclaim"] += len(pfns)
        is_tdr = pfns == td.tdr_pfn
        td.chldcnt -= int(len(pfns) - np.count_nonzero(is_tdr))
        td.pamt_pt[pfns] = PT_NDA
        self.clear(len(pfns))


class _PfnSet:
    """Every private page lo..hi-1, without materialising their frames: they fill the frame
    range [first, last] except for the S-EPT pages interleaved in it (fast path)."""

    def __init__(self, td: BulkTd, lo: int, hi: int):
        self.td, self.lo, self.hi = td, lo, hi
        self.first = int(td.guest_pfns(lo, lo + 1)[0])
        self.last = int(td.guest_pfns(hi - 1, hi)[0])

    def array(self) -> np.ndarray:
        return self.td.guest_pfns(self.lo, self.hi)


def _set_pt(td: BulkTd, pfns, pt: int) -> None:
    if isinstance(pfns, _PfnSet):
        tables = td.all_table_pfns()
        a, b = np.searchsorted(tables, [pfns.first, pfns.last + 1])
        inner = tables[a:b]
        keep = td.pamt_pt[inner].copy()
        td.pamt_pt[pfns.first:pfns.last + 1] = pt
        td.pamt_pt[inner] = keep
    else:
        td.pamt_pt[pfns] = pt


def bulk_teardown(memory, vcpus: int, strategy: str = "v6.16", **kw) -> tuple[BulkTd, BulkReport]:
    """Build a `BulkTd` of `memory` (bytes or "64M") and tear it down with `strategy`."""
    td = BulkTd.from_size(memory, vcpus, **kw)
    return td, td.teardown(strategy)


__all__ = ["BulkTd", "BulkReport", "bulk_teardown", "tables_through", "TDCS_PAGES",
           "TDCX_PER_VCPU", "CACHE_WB_ROUNDS"]
