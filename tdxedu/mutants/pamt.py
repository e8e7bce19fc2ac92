"""Dynamic PAMT kernel side (`tdx_pamt_get/put`, the per-vCPU PAMT cache, the removal path):
reference/dpamt.md §2.5, §3.2, §3.3."""

from . import Mutant, mutations

MUTANTS = [
    Mutant(
        "no-pamt-lock",
        "tdx_pamt_get/put without the global pamt_lock (v4's HPA_RANGE_NOT_FREE = 'lost a race')",
        "dpamt.md §2.5 [V6-05] (one global spinlock around read refcount, decide, SEAMCALL, "
        "update), [V6-06 changelog]",
        ("pamt-get-put",), "pair_lost", {"pamt_lock": False}),
    Mutant(
        "module-hint-only",
        "the first design: no kernel refcount, PAMT.REMOVE on the module's removal hint",
        "dpamt.md §2.5 [V2-CL] 'previous attempt' (CPU1 removes the pair CPU0 is about to use)",
        ("pamt-get-put",), "pair_lost", {"pamt_policy": "module-hint"}),
    Mutant(
        "pamt-put-missing-on-removal",
        "no tdx_pamt_put after PAGE.REMOVE of a guest page: the range's refcount and pair leak",
        "dpamt.md §3.3 [V6-09] ('after a successful TDH.MEM.PAGE.REMOVE and the page reset, "
        "tdx_pamt_put(pfn)')",
        ("teardown-dpamt", "dpamt-fault"), "pamt_refs_left",
        mutations("pamt-put-missing-on-removal")),
    Mutant(
        "alloc-under-mmu-lock",
        "the fault path allocates the PAMT page pair with alloc_page(GFP_KERNEL) while holding "
        "mmu_lock, instead of drawing on the vCPU's pre-filled cache",
        "dpamt.md §3.2 [V6-09] (topup_external_cache before mmu_lock; no allocation inside the "
        "locked section), §6 'no allocation inside the locked section'",
        ("dpamt-fault",), "invariant:sleeping function",
        mutations("alloc-under-mmu-lock")),
]
