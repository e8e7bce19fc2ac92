"""Dynamic PAMT on the fault path's error exits and sleeping in atomic context
(`tdx_handle_ept_violation`, `tdx_mem_page_aug`, `tdx_topup_pamt_cache`): [V6-09], [Y0],
[K616], [M15]. Caught by the host invariants ``pamt-balance`` and ``might-sleep`` or by a
KVM_BUG_ON."""

from . import Mutant, mutations

FAMILY = "pamt"

MUTANTS = [
    Mutant(
        "no-pamt-put-on-aug-error",
        "when PAGE.AUG returns BUSY (a 0-step VP.ENTER holds the S-EPT tree) the fault path "
        "returns -EBUSY without tdx_pamt_put: the reference taken for the page leaks",
        "[V6-09] (the page's PAMT reference is dropped when its mapping fails); [Y0] "
        "(-EBUSY -> RET_PF_RETRY, the fault is retried); invariant pamt-balance",
        ("dpamt-aug-busy",), "invariant:pamt-balance", mutations("no-pamt-put-on-aug-error")),
    Mutant(
        "topup-under-mmu-lock",
        "the fault path tops up the vCPU's PAMT page cache after taking mmu_lock: "
        "alloc_page(GFP_KERNEL_ACCOUNT) may sleep under a spinning lock",
        "[V6-09] (topup_external_cache runs in mmu_topup_memory_caches, before mmu_lock); "
        "might_sleep(); invariant might-sleep",
        ("dpamt-aug-busy", "dpamt-fault"), "invariant:might-sleep",
        mutations("topup-under-mmu-lock")),
]
