"""TDP MMU root reference counting (`kvm_tdp_mmu_put_root`, `kvm_tdp_mmu_get_root`,
`kvm_tdp_mmu_invalidate_roots`): reference/tdp_mmu_roots.md §1.4, §1.6, §3, §5.3. The mutants
are `RootPolicy` variants (`tdxedu.kvm.mmu_role`), no hook needed."""

from dataclasses import replace

from ..kvm.mmu_role import BROKEN_POLICIES, POLICIES
from . import Mutant

# v6.4's put path (KVM_BUG_ON at 0 on a valid root) with v6.3's counting (start at 1).
REFCOUNT_1_V64 = replace(POLICIES["v6.4"], name="mutant-refcount-1-v6.4-put",
                         initial_refcount=1, broken="inv2")

MUTANTS = [
    Mutant(
        "refcount-1-v6.4-put",
        "new roots start at refcount 1 (vCPU only) but put uses the v6.4 path: the vCPU's last "
        "put drops a valid root to 0",
        "tdp_mmu_roots.md §1.6 FIX edbdb43fc96b ('New roots start at refcount 2 ... reaching 0 "
        "on a valid root is now a bug (KVM_BUG_ON)'), §5.3 inv2",
        ("roots-smm-storm",), "invariant:inv2", {"root_policy": REFCOUNT_1_V64}),
    Mutant(
        "put-without-invalid-check",
        "put frees a root at refcount 0 without the invalid check (and counting from 1): a "
        "valid root is freed",
        "tdp_mmu_roots.md §1.4 (Paolo's 'refcount = 0 but valid' comment), §5.1, §5.3 inv2; "
        "kvm_tdp_mmu_put_root",
        ("roots-smm-storm",), "invariant:inv2",
        {"root_policy": BROKEN_POLICIES["broken-free-valid-root"]}),
    Mutant(
        "get-unconditional",
        "kvm_tdp_mmu_get_root increments from zero: a reader revives a root in its last put",
        "tdp_mmu_roots.md §1.3 614f6970aa70 'do not allow readers to acquire references to "
        "invalid roots', §5.3 inv5 (refcount_inc_not_zero)",
        ("roots-last-put-race",), "invariant:inv5",
        {"root_policy": BROKEN_POLICIES["broken-get-unconditional"]}),
    Mutant(
        "resurrect-no-zap",
        "v6.3 resurrection (count back to 1, mark invalid) without queuing the zap work",
        "tdp_mmu_roots.md §1.4 ('Scheduling was mandatory, not an optimization, because "
        "kvm_tdp_mmu_invalidate_all_roots() skips already-invalid roots'), §5.3 inv4/inv9",
        ("roots-smm-storm",), "invariant:inv4",
        {"root_policy": BROKEN_POLICIES["broken-resurrect-no-zap"]}),
    Mutant(
        "fast-zap-mirror",
        "the memslot fast zap invalidates KVM_VALID_ROOTS, mirror (S-EPT) root included",
        "tdp_mmu_roots.md §3.1 (fast zap passes KVM_DIRECT_ROOTS: 'external page tables don't "
        "support fast zapping'), §3.3, §5.3 inv11",
        ("roots-memslot-update-td",), "invariant:inv11",
        {"root_policy": BROKEN_POLICIES["broken-fast-zap-mirror"]}),
    Mutant(
        "invalidate-no-request",
        "invalidate roots without KVM_REQ_MMU_FREE_OBSOLETE_ROOTS in the same critical "
        "section: a vCPU enters the guest on an invalid root",
        "tdp_mmu_roots.md §5.3 inv8; kvm_mmu_zap_all_fast (mmu.c)",
        ("roots-memslot-update",), "invariant:inv8",
        {"root_policy": BROKEN_POLICIES["broken-invalidate-no-request"]}),
]
