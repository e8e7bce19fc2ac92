"""SEAMCALL counts of a clean teardown in closed form (the flows of `tdxedu.kvm.teardown`,
[K616]), and the workload figures the cost model prices. Tests check these equal the
bulk engine's and the step engine's counts; the cost sweep uses them so a 1 TiB point costs
microseconds. A fault-injected TD (`stale_vcpus`) goes through the bulk engine instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..kvm.tdx import TEARDOWN_POLICIES
from .bulk import CACHE_WB_ROUNDS, TDCS_PAGES, TDCX_PER_VCPU, BulkTd, n_chunks
from .dpamt import DpamtLayout

RUNTIME_STRATEGIES = ("v6.16", "flush-at-vcpu-free")  # private pages removed while RUNNABLE
RECLAIM_STRATEGIES = ("terminate-vm", "v19-notifier")  # private pages reclaimed after HKID


@dataclass(frozen=True)
class Workload:
    """What a teardown does, in the units the cost model prices."""

    strategy: str
    pages: int  # private 4K pages
    vcpus: int
    packages: int
    remote_vcpus: int  # vCPUs on another package than the CPU running the zap (cpu 0)
    counts: dict  # SEAMCALLs per leaf
    kicks: int  # kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE) calls
    cleared: int  # pages cleared with MOVDIR64B
    ok: bool = True
    pamt_puts: int = 0  # Dynamic PAMT: tdx_pamt_put calls (0 on a static-PAMT host)
    build_counts: dict = field(default_factory=dict)  # DPAMT: the build's PAMT.ADDs

    @property
    def dynamic_pamt(self) -> bool:
        return bool(self.build_counts)

    @property
    def runtime_path(self) -> bool:
        return self.counts.get("tdh_mem_page_remove", 0) > 0


def sept_pages(pages: int) -> int:
    nc = n_chunks(pages)
    return nc + -(-nc // 512) + -(-nc // (512 * 512))


def remote_vcpus(vcpus: int, packages: int) -> int:
    """vCPU i runs on CPU i with ceil(vcpus/packages) CPUs per package (`RunningTd`), and the
    zap runs on CPU 0: the vCPUs past the first package's CPUs are remote."""
    cpp = max(1, -(-vcpus // packages))
    return max(0, vcpus - cpp)


def teardown_counts(pages: int, vcpus: int, strategy: str, *, packages: int = 1,
                    clear_pages: bool = True, dynamic_pamt: bool = False) -> Workload:
    """Closed-form counts for a clean teardown of a fully mapped TD. On a Dynamic PAMT host
    every page the TD gave the module drops its range reference (`tdx_pamt_put`), and every
    2 MB range the build opened issues one TDH.PHYMEM.PAMT.REMOVE ([V6-06]; the ranges:
    `dpamt.DpamtLayout`)."""
    if strategy not in TEARDOWN_POLICIES:
        raise ValueError(f"unknown teardown strategy {strategy!r}; allowed: "
                         f"{', '.join(TEARDOWN_POLICIES)}")
    control = vcpus * (TDCX_PER_VCPU + 1) + sept_pages(pages) + TDCS_PAGES + 1
    c = {"tdh_vp_flush": vcpus, "tdh_mng_vpflushdone": 1,
         "tdh_phymem_cache_wb": packages * CACHE_WB_ROUNDS, "tdh_mng_key_freeid": 1}
    if strategy in RUNTIME_STRATEGIES:
        c.update(tdh_mem_range_block=pages, tdh_mem_track=pages, tdh_mem_page_remove=pages,
                 tdh_phymem_page_wbinvd=pages + 1, tdh_phymem_page_reclaim=control)
        kicks = pages
    else:
        c.update(tdh_phymem_page_reclaim=control + pages, tdh_phymem_page_wbinvd=1)
        kicks = 0
    cleared = (pages + control) if clear_pages else 0
    puts, build = 0, {}
    if dynamic_pamt:
        opened = DpamtLayout(pages, vcpus, TDCS_PAGES, TDCX_PER_VCPU).ranges_opened()
        c["tdh_phymem_pamt_remove"] = opened
        puts, build = pages + control, {"tdh_phymem_pamt_add": opened}
    return Workload(strategy, pages, vcpus, packages, remote_vcpus(vcpus, packages), c, kicks,
                    cleared, True, puts, build)


def workload(pages: int, vcpus: int, strategy: str, *, packages: int = 1,
             clear_pages: bool = True, stale_vcpus: int = 0,
             dynamic_pamt: bool = False) -> Workload:
    """Closed form when nothing fails; the bulk engine when a fault is injected."""
    if not stale_vcpus:
        return teardown_counts(pages, vcpus, strategy, packages=packages,
                               clear_pages=clear_pages, dynamic_pamt=dynamic_pamt)
    td = BulkTd(pages, vcpus, packages=packages, clear_pages=clear_pages,
                stale_vcpus=stale_vcpus, dynamic_pamt=dynamic_pamt)
    r = td.teardown(strategy)
    # every page the TD gave back dropped its reference; leaked pages kept theirs
    puts = 0
    if dynamic_pamt:
        total_pages = pages + sum(td.n_tables) + TDCS_PAGES + 1 + vcpus * (TDCX_PER_VCPU + 1)
        puts = total_pages - r.n_leaked
    return Workload(strategy, pages, vcpus, packages, remote_vcpus(vcpus, packages), r.counts,
                    r.kicks, r.cleared_pages, r.ok, puts, r.build_counts)
