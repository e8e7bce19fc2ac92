"""Dynamic PAMT kernel side (`tdx_pamt_get/put`, the per-vCPU PAMT cache, the removal path):
[V2-CL], [V6-05], [V6-06], [V6-09]."""

from . import Mutant, mutations

MUTANTS = [
    Mutant(
        "no-pamt-lock",
        "tdx_pamt_get/put without the global pamt_lock (v4's HPA_RANGE_NOT_FREE = 'lost a race')",
        "[V6-05] (one global spinlock around reading the refcount, deciding, the SEAMCALL "
        "and the update), [V6-06]",
        ("pamt-get-put",), "pair_lost", {"pamt_lock": False}),
    Mutant(
        "module-hint-only",
        "the first design: no kernel refcount, PAMT.REMOVE on the module's removal hint",
        "[V2-CL], its 'previous attempt' (CPU1 removes the pair CPU0 is about to use)",
        ("pamt-get-put",), "pair_lost", {"pamt_policy": "module-hint"}),
    Mutant(
        "pamt-put-missing-on-removal",
        "no tdx_pamt_put after PAGE.REMOVE of a guest page: the range's refcount and pair leak",
        "[V6-09] (tdx_pamt_put(pfn) after a successful TDH.MEM.PAGE.REMOVE and the page "
        "reset)",
        ("teardown-dpamt", "dpamt-fault"), "pamt_refs_left",
        mutations("pamt-put-missing-on-removal")),
    Mutant(
        "alloc-under-mmu-lock",
        "the fault path allocates the PAMT page pair with alloc_page(GFP_KERNEL) while holding "
        "mmu_lock, instead of drawing on the vCPU's pre-filled cache",
        "[V6-09] (topup_external_cache fills the cache before mmu_lock; nothing is allocated "
        "inside the locked section)",
        ("dpamt-fault",), "invariant:sleeping function",
        mutations("alloc-under-mmu-lock")),
]
