"""Failure paths: what KVM does when a SEAMCALL fails at its call site, or when hardware does
what it may (CACHE.WB interrupted, a vCPU loaded but never entered). Each mutant mishandles
one failure; the factories (`tdxedu.mutants.scenarios_faults`) inject it with
`tdxedu.tdx.fault_inject` and hold the kernel's own reaction as expected, so the catch is the
named check that sees the consequence: [K616] tdx_sept_remove_private_spte,
tdx_reclaim_page, tdx_flush_vp, tdx_mmu_release_hkid; [M15] the module's statuses."""

from . import Mutant, mutations

FAMILY = "faults"

MUTANTS = [
    Mutant(
        "free-after-failed-remove",
        "a failed TDH.MEM.PAGE.REMOVE is treated as done: the mirror entry goes and "
        "guest_memfd frees a page the TD still owns",
        "[K616] tdx_sept_remove_private_spte (KVM_BUG_ON on a REMOVE failure; the page is "
        "leaked, never freed); [M15] tdh_mem_page_remove.c",
        ("teardown-fault-remove",), "invariant:freed while the TDX module owns it",
        mutations("free-after-failed-remove")),
    Mutant(
        "wbinvd-failure-ignored",
        "the status of TDH.PHYMEM.PAGE.WBINVD after REMOVE is not checked: a page whose "
        "cache lines were never written back goes back to the host",
        "[K616] tdx_sept_remove_private_spte (a failed WBINVD is a KVM_BUG_ON and the page "
        "is leaked); [M15] tdh_phymem_page_wbinvd.c",
        ("teardown-fault-wbinvd",), "invariant:dirty cache lines",
        mutations("wbinvd-failure-ignored")),
    Mutant(
        "reclaim-failure-unreported",
        "a failed TDH.PHYMEM.PAGE.RECLAIM leaves the page allocated but nowhere on record: "
        "neither freed nor reported as leaked",
        "[K616] tdx_reclaim_page ('leak the page', with pr_tdx_error); the project's rule: "
        "nothing is silently lost",
        ("teardown-fault-reclaim",), "seamcall_leaked",
        mutations("reclaim-failure-unreported")),
    Mutant(
        "reclaim-failure-frees-page",
        "a failed TDH.PHYMEM.PAGE.RECLAIM is taken as success: the page goes back to the host "
        "while the module still owns it",
        "[K616-TDX] tdx_reclaim_page (a failure leaks the page: 'the page can't be reused'); "
        "[M15] tdh_phymem_page_reclaim.c",
        ("teardown-fault-reclaim",), "invariant:freed while the TDX module owns it",
        mutations("reclaim-failure-frees-page")),
    Mutant(
        "cache-wb-first-package-only",
        "TDH.PHYMEM.CACHE.WB runs on package 0 only: on a two-package host KEY.FREEID finds "
        "the other package's caches not written back",
        "[K616-TDX] tdx_mmu_release_hkid (CACHE.WB on one CPU of *every* package); [M15] "
        "tdh_mng_key_freeid.c (TDX_WBCACHE_NOT_COMPLETE); needs two packages",
        ("teardown-cache-wb-interrupted",), "hkid_leaked",
        mutations("cache-wb-first-package-only")),
    Mutant(
        "flush-first-vcpu-only",
        "the HKID release flushes only the first vCPU: a second vCPU is still associated, "
        "VPFLUSHDONE says TDX_FLUSHVP_NOT_DONE and the HKID leaks (one vCPU never shows it)",
        "[K616-TDX] tdx_mmu_release_hkid (TDH.VP.FLUSH of every vCPU on its CPU first); [M15] "
        "tdh_mng_vpflushdone.c",
        ("teardown", "teardown-cache-wb-interrupted"), "hkid_leaked",
        mutations("flush-first-vcpu-only")),
    Mutant(
        "aug-busy-is-fatal",
        "TDH.MEM.PAGE.AUG returning TDX_OPERAND_BUSY on the fault path is a KVM_BUG_ON "
        "instead of -EBUSY and a retried fault",
        "[Y0] 'KVM: TDX: Return -EBUSY when tdh_mem_page_aug() encounters TDX_OPERAND_BUSY'; "
        "[K616-TDX] tdx_mem_page_aug",
        ("fault-aug-busy",), "kvm_bug", mutations("aug-busy-is-fatal")),
    Mutant(
        "cache-wb-no-resume",
        "TDH.PHYMEM.CACHE.WB interrupted (TDX_INTERRUPTED_RESUMABLE) is taken as an error, not "
        "resumed: KEY.FREEID then fails and the HKID is leaked",
        "[K616] tdx_mmu_release_hkid (resume while INTERRUPTED_RESUMABLE, up to 10000 times); "
        "[M15] tdh_phymem_cache_wb.c (an interrupted round resumes with RCX = 1)",
        ("teardown-cache-wb-interrupted",), "hkid_leaked", mutations("cache-wb-no-resume")),
    Mutant(
        "flush-not-associated-is-error",
        "TDH.VP.FLUSH returning TDX_VCPU_NOT_ASSOCIATED (a vCPU loaded on a CPU but never "
        "entered there) is a KVM_BUG_ON instead of tolerated",
        "[K616] tdx_flush_vp (TDX_VCPU_NOT_ASSOCIATED is not an error: the vCPU has nothing "
        "to flush there); [M15] tdh_vp_flush.c",
        ("teardown-loaded-never-entered",), "kvm_bug",
        mutations("flush-not-associated-is-error")),
]
