"""Dynamic PAMT, kernel side: per-2 MB refcounts, `tdx_pamt_get/put`, control pages and the
per-vCPU PAMT page cache (arch/x86/virt/vmx/tdx/tdx.c and arch/x86/kvm/vmx/tdx.c, DPAMT v6).

The rules (Dynamic PAMT v6, patch by patch):

* `pamt_refcounts[pfn >> 9]` counts the 4K pages of a 2 MB range given to the TDX module, by
  every TD on the host (PAMT is global) [V6-04], [V6-05].
* `tdx_pamt_get(pfn, cache)`: fast path `atomic_inc_not_zero`; otherwise take two pages
  (from `cache`, else `alloc_page`) *before* the lock, take the global `pamt_lock`, re-check
  (another get may have done 0->1: the loser gives its pages back), TDH.PHYMEM.PAMT.ADD, set
  the count to 1 [V6-05], [V6-06].
* `tdx_pamt_put(pfn)`: `atomic_dec_and_lock`: only the 1->0 drop takes `pamt_lock`, issues
  TDH.PHYMEM.PAMT.REMOVE and frees the two returned pages; if REMOVE fails the count goes back
  to 1 and the pages are leaked with a WARN [V6-06].
* `tdx_alloc_control_page` / `tdx_free_control_page`: a page plus its PAMT reference, direct
  allocation, never under a spinlock; free always succeeds [V6-03], [V6-07].
* `tdx_topup_pamt_cache`: before `mmu_lock`, fill the vCPU's `pamt_cache` up to
  PT64_ROOT_MAX_LEVEL x 2 = 10 pages; under `mmu_lock` S-EPT and guest pages take their pair
  from it, found with `kvm_get_running_vcpu()` [V6-09].

Where the pages come from was debated from the RFC to v6 ([RFC-08], [V2-THREAD], [V3-CL],
[V4-CL]); each design is a named policy on this one code path, `ALLOC_POLICIES`:

* ``"vcpu-cache"``: the v6 design above.
* ``"phys-prepare"``: the RFC's `phys_prepare()` hook, drawing on a per-vCPU pool the TDP MMU
  passes in explicitly. Callers with no vCPU at hand get no pool: here the
  KVM_TDX_INIT_MEM_REGION populate path and splitting a 2 MB mapping (which callers lacked a
  vCPU is this model's choice; the RFC-08 thread discussed the per-KVM fallback) -> -ENOMEM,
  a KVM_BUG_ON.
* ``"kmem-cache-ctor"``: Kai Huang's idea: S-EPT pages come from a kmem_cache whose
  constructor installs DPAMT, and freed S-EPT pages go back to the cache still holding their
  PAMT reference. Kirill's objection, shown here: PAMT memory stays held with no TD running,
  which makes PAMT leaks hard to tell from caching.
* ``"gmem-prepare"``: guest pages get PAMT when guest_memfd allocates them
  (`kvm_arch_gmem_prepare`). Kirill's objection: THP may split or collapse the folio between
  allocation and the EPT mapping (`thp_collapse` below), so the pfn that gets mapped is not
  the pfn that was prepared: the mapping fails with TDX_MISSING_PAMT_PAGE_PAIR and the old
  reference leaks.
* ``"module-hint"``: the first, racy design ([V2-CL] "previous attempt"): no kernel refcount;
  always PAMT.ADD before giving a page (HPA_RANGE_NOT_FREE means "already there") and
  PAMT.REMOVE whenever a removal SEAMCALL returns PAMT_REMOVAL_HINT. The explorer finds the
  race [V2-CL] describes (a pair removed between another CPU's ADD and its AUG).

`Host(dynamic_pamt=True, pamt_lock=False)` drops `pamt_lock` (the "no-pamt-lock" variant) to
show why v6 step 1 exists: without it two gets can both issue PAMT.ADD (one gets
TDX_OPERAND_BUSY or HPA_RANGE_NOT_FREE), and a get that reads HPA_RANGE_NOT_FREE as "someone
else added it" (v4) can take a reference on a pair a concurrent put is removing.
"""

from __future__ import annotations

from ..tdx import status as st
from ..tdx.pamt import PAGE_SHIFT
from ..trace import PREEMPT
from .locks import Mutex

ALLOC_POLICIES = ("vcpu-cache", "phys-prepare", "kmem-cache-ctor", "gmem-prepare",
                  "module-hint")
PT64_ROOT_MAX_LEVEL = 5
TDX_DPAMT_ENTRY_PAGE_CNT = 2
TDX_PAMT_CACHE_TARGET = PT64_ROOT_MAX_LEVEL * TDX_DPAMT_ENTRY_PAGE_CNT  # 10 pages per vCPU
ENOMEM, EIO = -12, -5
SRC = "arch/x86/virt/vmx/tdx/tdx.c"


def check_alloc_policy(policy: str) -> str:
    if policy not in ALLOC_POLICIES:
        raise ValueError(f"unknown PAMT allocation policy {policy!r}; allowed: "
                         f"{', '.join(ALLOC_POLICIES)}")
    return policy


class TdxPamtCache:
    """`struct tdx_pamt_cache`: a list of pages and its count, one per vCPU [V6-08]."""

    def __init__(self):
        self.pages: list[int] = []

    @property
    def cnt(self) -> int:
        return len(self.pages)


class TdxPamt:
    """The host-wide Dynamic PAMT state: refcounts, `pamt_lock`, and what went wrong."""

    def __init__(self, host, *, policy: str = "vcpu-cache", use_lock: bool = True):
        self.host = host
        self.policy = check_alloc_policy(policy)
        self.use_lock = bool(use_lock)
        self.pamt_refcounts: dict[int, int] = {}  # 2 MB index -> atomic_t
        self.pamt_lock = Mutex("pamt_lock", None, host.debug_errors)
        self.warnings: list[str] = []
        self.leaked_pages: list[int] = []  # PAMT pages given up on (REMOVE failed)
        self.sept_kmem_cache: list[int] = []  # "kmem-cache-ctor": pooled S-EPT pages
        self.busy_seen = 0  # PAMT.ADD/REMOVE that got TDX_OPERAND_BUSY (only without the lock)

    def refcount(self, pfn: int) -> int:
        return self.pamt_refcounts.get(pfn >> 9, 0)

    def _set(self, idx: int, value: int) -> None:
        if value:
            self.pamt_refcounts[idx] = value
        else:
            self.pamt_refcounts.pop(idx, None)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        self.host.trace.emit("WARN", msg, source=SRC)

    def pairs_installed(self) -> int:
        """PT_PAMT nodes in the module: how many page pairs the host has given it."""
        from ..tdx.pamt import PageType

        return sum(1 for r in self.host.module.pamt.ranges.values()
                   if r.pt == PageType.PT_PAMT)


def _lock(p: TdxPamt, who: str):
    if p.use_lock:
        yield PREEMPT
        yield from p.pamt_lock.lock(who)


def _unlock(p: TdxPamt, who: str) -> None:
    if p.use_lock:
        p.pamt_lock.unlock(who)


def _take_pages(host, cache: TdxPamtCache | None, atomic: bool = False) -> list[int]:
    if cache is not None:
        if cache.cnt < TDX_DPAMT_ENTRY_PAGE_CNT:
            return []  # would have to allocate under a spinlock: the cache was not topped up
        return [cache.pages.pop(), cache.pages.pop()]
    if atomic:  # might_sleep(): alloc_page(GFP_KERNEL_ACCOUNT) with mmu_lock held [V6-09]
        host.allocator.errors.append(
            "BUG: sleeping function called from invalid context: alloc_page(GFP_KERNEL) for "
            "a PAMT page pair with kvm->mmu_lock held (top up the PAMT cache first, [V6-09])")
    return [host.allocator.alloc_page("DPAMT"), host.allocator.alloc_page("DPAMT")]


def _give_back(host, cache: TdxPamtCache | None, pages: list[int]) -> None:
    for pa in pages:
        if cache is not None:
            cache.pages.append(pa)
        else:
            host.allocator.free_page(pa)


def tdx_pamt_get(host, pfn: int, cache: TdxPamtCache | None = None, *, cpu: int = 0,
                 who: str = "pamt", atomic: bool = False):
    """Take a PAMT reference on pfn's 2 MB range; PAMT.ADD on 0 -> 1. Returns 0 or -errno.
    `atomic`: the caller holds a spinning lock (mmu_lock), so it must not allocate."""
    p = host.pamt
    idx = pfn >> 9
    hpa_2m = idx << 21
    if p.policy == "module-hint":
        return (yield from _module_hint_get(host, hpa_2m, cache, cpu))
    if p.pamt_refcounts.get(idx, 0):  # atomic_inc_not_zero
        p.pamt_refcounts[idx] += 1
        return 0
    pages = _take_pages(host, cache, atomic)
    if not pages:
        return ENOMEM
    yield from _lock(p, who)
    try:
        if p.pamt_refcounts.get(idx, 0):  # another get did 0 -> 1 meanwhile: we lost
            p.pamt_refcounts[idx] += 1
            _give_back(host, cache, pages)
            return 0
        r = yield from host.seamcall("tdh_phymem_pamt_add", hpa_2m, *pages, cpu=cpu)
        if r.status.is_error:
            _give_back(host, cache, pages)
            if r.status.matches(st.TDX_OPERAND_BUSY):
                p.busy_seen += 1
            if not p.use_lock and r.status.matches(st.TDX_HPA_RANGE_NOT_FREE):
                # v4's reading without the lock: "lost a race with another get" -> take a
                # reference on the pair that is there (and may be about to go away).
                p._set(idx, p.pamt_refcounts.get(idx, 0) + 1)
                return 0
            host.trace.emit("pr_tdx_error", "TDH.PHYMEM.PAMT.ADD", status=r.status, cpu=cpu,
                            source=SRC)
            return EIO
        p._set(idx, p.pamt_refcounts.get(idx, 0) + 1)
        return 0
    finally:
        _unlock(p, who)


def tdx_pamt_put(host, pfn: int, *, cpu: int = 0, hint: bool = False, who: str = "pamt"):
    """Drop a PAMT reference; PAMT.REMOVE on 1 -> 0 (`atomic_dec_and_lock`)."""
    p = host.pamt
    idx = pfn >> 9
    if p.policy == "module-hint":
        if hint:  # the module says the range is empty: remove the pair
            yield from _remove_pair(host, idx, cpu)
        return
    count = p.pamt_refcounts.get(idx, 0)
    if count <= 0:
        p.warn(f"tdx_pamt_put on {idx << 21:#x} with refcount 0")
        return
    if count > 1:  # atomic_dec_and_lock fast path: not the last reference
        p.pamt_refcounts[idx] = count - 1
        return
    yield from _lock(p, who)
    try:
        count = p.pamt_refcounts.get(idx, 0) - 1
        p._set(idx, max(count, 0))
        if count != 0:
            return
        ok = yield from _remove_pair(host, idx, cpu)
        if not ok:
            p._set(idx, 1)  # v6: keep the count, leak the pages, WARN, no panic
    finally:
        _unlock(p, who)


def _remove_pair(host, idx: int, cpu: int):
    p = host.pamt
    r = yield from host.seamcall("tdh_phymem_pamt_remove", idx << 21, cpu=cpu)
    if r.status.matches(st.TDX_OPERAND_BUSY):
        p.busy_seen += 1
    if r.status.is_error:
        p.warn(f"TDH.PHYMEM.PAMT.REMOVE {idx << 21:#x} failed: {r.status}")
        return False
    for pa in (r.rdx, r.r8):  # tdx_quirk_reset_page, then free
        host.allocator.free_page(pa)
    return True


def _module_hint_get(host, hpa_2m: int, cache, cpu: int):
    pages = _take_pages(host, cache)
    if not pages:
        return ENOMEM
    r = yield from host.seamcall("tdh_phymem_pamt_add", hpa_2m, *pages, cpu=cpu)
    if r.status.is_error:
        _give_back(host, cache, pages)
        if r.status.matches(st.TDX_HPA_RANGE_NOT_FREE):
            return 0  # "already there" -- until some other CPU removes it
        return EIO
    return 0


# --- control pages and the per-vCPU cache ---------------------------------------------------

def tdx_alloc_control_page(host, what: str, cpu: int = 0):
    """A page for a TD/vCPU control structure (or an S-EPT page) with its PAMT reference.
    Static PAMT: just the allocation. Raises MemoryError when the reference cannot be taken
    (the kernel returns NULL and the ioctl fails with -ENOMEM)."""
    pa = host.allocator.alloc_page(what)
    if host.pamt is None:
        return pa
    err = yield from tdx_pamt_get(host, pa >> PAGE_SHIFT, None, cpu=cpu)
    if err:
        host.allocator.free_page(pa)
        raise MemoryError(f"tdx_alloc_control_page({what}): PAMT reference failed ({err})")
    return pa


def tdx_free_control_page(host, pa: int, cpu: int = 0, hint: bool = False):
    """Put the page's PAMT reference and free it; never fails [V6-03]. `hint`: the RECLAIM's
    PAMT_REMOVAL_HINT (only the "module-hint" policy looks at it)."""
    if host.pamt is not None:
        yield from tdx_pamt_put(host, pa >> PAGE_SHIFT, cpu=cpu, hint=hint)
    host.allocator.free_page(pa)


def tdx_topup_pamt_cache(host, cache: TdxPamtCache, n: int = TDX_PAMT_CACHE_TARGET, *,
                         kvm=None, who: str = "") -> None:
    """`topup_external_cache` -> `tdx_topup_pamt_cache`: before mmu_lock, may sleep [V6-09]
    (`might_sleep` checked when the caller names its `kvm` and itself)."""
    if kvm is not None:
        kvm.might_sleep(who, "tdx_topup_pamt_cache (alloc_page(GFP_KERNEL_ACCOUNT))")
    while cache.cnt < n:
        cache.pages.append(host.allocator.alloc_page("pamt_cache"))


def tdx_pamt_cache_free(host, cache: TdxPamtCache) -> None:
    """tdx_vcpu_free: unused cache pages were never given to the module; just free them."""
    while cache.pages:
        host.allocator.free_page(cache.pages.pop())


def vcpu_pamt_cache(vcpu) -> TdxPamtCache:
    cache = getattr(vcpu.arch, "pamt_cache", None)
    if cache is None:
        cache = vcpu.arch.pamt_cache = TdxPamtCache()
    return cache


def kvm_get_running_vcpu(kvm, cpu: int):
    """The vCPU loaded on `cpu`, if any (what `kvm_get_running_vcpu()` sees there)."""
    for v in kvm.vcpus:
        if v.cpu == cpu:
            return v
    return None


def thp_collapse(kt, gpa: int) -> int:
    """khugepaged collapses (or splits) the folio behind `gpa` before it is mapped: the data
    moves to a page in another 2 MB range. guest_memfd now hands out the new pfn; a PAMT
    reference taken at allocation time ("gmem-prepare") still sits on the old one."""
    alloc = kt.host.allocator
    old = kt.gmem[gpa]
    skipped, new = [], alloc.alloc_page("guest_memfd")
    while new >> 21 == old >> 21 or kt.host.module.pamt.range_pt(new) != 0:
        skipped.append(new)
        new = alloc.alloc_page("guest_memfd")
    for pa in skipped:
        alloc.free_page(pa)
    kt.gmem[gpa] = new
    kt.gmem_prepared.pop(gpa, None)
    alloc.free_page(old)
    kt.emit("thp_collapse", gpa, old, new)
    return new


# --- hooks for KVM's TDX glue (kvm/tdx.py, kvm/teardown.py); only run with a DPAMT host --------

class Errno(int):
    """A kernel error (-ENOMEM, -EIO) returned where the glue otherwise returns a status."""

    is_error = True

    def matches(self, other) -> bool:
        return False

    def __str__(self) -> str:
        return {ENOMEM: "-ENOMEM", EIO: "-EIO"}.get(int(self), str(int(self)))


def _fault_cache(kt, cpu: int, vcpu, what: str):
    """The PAMT page cache a mapping under mmu_lock draws from, per policy. None + KVM_BUG_ON
    when there is none (the kernel then bugs the VM, [V6-09])."""
    policy = kt.host.pamt.policy
    if policy == "phys-prepare":
        if vcpu is None:
            kt.kvm.kvm_bug_on(True, f"phys_prepare({what}): no vCPU to take PAMT pages from")
            return None
        return vcpu_pamt_cache(vcpu)
    running = kvm_get_running_vcpu(kt.kvm, cpu)
    if kt.kvm.kvm_bug_on(running is None, f"{what}: kvm_get_running_vcpu() is NULL"):
        return None
    return vcpu_pamt_cache(running)


def dpamt_alloc_sept_page(kt, cpu: int, vcpu=None):
    """An S-EPT page with its PAMT reference (`tdx_sept_link_private_spt`, [V6-09])."""
    host = kt.host
    p = host.pamt
    if p.policy == "kmem-cache-ctor":
        if p.sept_kmem_cache:
            return p.sept_kmem_cache.pop()  # still holds the reference the constructor took
        return (yield from tdx_alloc_control_page(host, "S-EPT (kmem_cache ctor)", cpu))
    cache = _fault_cache(kt, cpu, vcpu, "S-EPT page")
    if cache is None:
        return Errno(ENOMEM)
    pa = host.allocator.alloc_page("S-EPT")
    err = yield from tdx_pamt_get(host, pa >> PAGE_SHIFT, cache, cpu=cpu)
    if err:
        host.allocator.free_page(pa)
        return Errno(err)
    return pa


def dpamt_get_guest_page(kt, gpa: int, pa: int, cpu: int, vcpu=None):
    """Before PAGE.AUG / PAGE.ADD of a 4K guest page: its PAMT reference. "gmem-prepare" took
    it when guest_memfd allocated the page, so the mapping path trusts that."""
    host = kt.host
    if host.pamt.policy == "gmem-prepare":
        return 0
    if "alloc-under-mmu-lock" in kt.mutations:  # mutant: no cache, alloc_page() right here
        cache = None
    else:
        cache = _fault_cache(kt, cpu, vcpu, "guest page")
        if cache is None:
            return Errno(ENOMEM)
    err = yield from tdx_pamt_get(host, pa >> PAGE_SHIFT, cache, cpu=cpu,
                                  atomic=kt.kvm.mmu_lock.held())
    return Errno(err) if err else 0


def dpamt_put_guest_page(kt, gpa: int, pa: int, cpu: int, hint: bool = False):
    """After the page is removed (or its mapping failed): drop its reference."""
    host = kt.host
    if host.pamt.policy == "gmem-prepare":
        if kt.gmem_prepared.pop(gpa, None) is None:
            return  # never prepared (e.g. after a THP collapse): nothing to put
    yield from tdx_pamt_put(host, pa >> PAGE_SHIFT, cpu=cpu, hint=hint)


def dpamt_gmem_prepare(kt, gpa: int, pa: int, cpu: int):
    """`kvm_arch_gmem_prepare` ("gmem-prepare" only): the reference at allocation time."""
    host = kt.host
    if host.pamt.policy != "gmem-prepare":
        return
    err = yield from tdx_pamt_get(host, pa >> PAGE_SHIFT, None, cpu=cpu)
    if not err:
        kt.gmem_prepared[gpa] = pa


def dpamt_free_sept_page(kt, pa: int, cpu: int, hint: bool = False):
    """After RECLAIM of an S-EPT page: `tdx_free_control_page`, or back to the kmem_cache."""
    host = kt.host
    if host.pamt.policy == "kmem-cache-ctor":
        host.pamt.sept_kmem_cache.append(pa)  # the PAMT reference stays with the pooled page
        return
    yield from tdx_pamt_put(host, pa >> PAGE_SHIFT, cpu=cpu, hint=hint)
    host.allocator.free_page(pa)
