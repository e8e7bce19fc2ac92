"""TDP MMU root reference counting (`kvm_tdp_mmu_put_root`, `kvm_tdp_mmu_get_root`,
`kvm_tdp_mmu_invalidate_roots`): [OVH22], [SC-preserve], [TDXPREP], [S-69]. The mutants
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
        "[SC-preserve] (commit edbdb43fc96b: new roots start at refcount 2, and a valid "
        "root reaching 0 is a KVM_BUG_ON); invariant inv2",
        ("roots-smm-storm",), "invariant:inv2", {"root_policy": REFCOUNT_1_V64}),
    Mutant(
        "put-without-invalid-check",
        "put frees a root at refcount 0 without the invalid check (and counting from 1): a "
        "valid root is freed",
        "[OVH22] (Paolo's comment on a root at refcount 0 that is still valid, removed by "
        "[SC-preserve]); kvm_tdp_mmu_put_root; invariant inv2",
        ("roots-smm-storm",), "invariant:inv2",
        {"root_policy": BROKEN_POLICIES["broken-free-valid-root"]}),
    Mutant(
        "get-unconditional",
        "kvm_tdp_mmu_get_root increments from zero: a reader revives a root in its last put",
        "[OVH22] (commit 614f6970aa70 'do not allow readers to acquire references to "
        "invalid roots'); invariant inv5 (refcount_inc_not_zero)",
        ("roots-last-put-race",), "invariant:inv5",
        {"root_policy": BROKEN_POLICIES["broken-get-unconditional"]}),
    Mutant(
        "resurrect-no-zap",
        "v6.3 resurrection (count back to 1, mark invalid) without queuing the zap work",
        "[OVH22] (v6.3 put: the resurrected root must be queued, because "
        "kvm_tdp_mmu_invalidate_all_roots() skips roots that are already invalid); "
        "invariants inv4, inv9",
        ("roots-smm-storm",), "invariant:inv4",
        {"root_policy": BROKEN_POLICIES["broken-resurrect-no-zap"]}),
    Mutant(
        "fast-zap-mirror",
        "the memslot fast zap invalidates KVM_VALID_ROOTS, mirror (S-EPT) root included",
        "[TDXPREP] (fast zap passes KVM_DIRECT_ROOTS: external page tables cannot be "
        "fast-zapped); [RE-P2] (private page tables live until the TD is destroyed); "
        "invariant inv11",
        ("roots-memslot-update-td",), "invariant:inv11",
        {"root_policy": BROKEN_POLICIES["broken-fast-zap-mirror"]}),
    Mutant(
        "invalidate-no-request",
        "invalidate roots without KVM_REQ_MMU_FREE_OBSOLETE_ROOTS in the same critical "
        "section: a vCPU enters the guest on an invalid root",
        "[M-610] kvm_mmu_zap_all_fast (mmu.c); invariant inv8",
        ("roots-memslot-update",), "invariant:inv8",
        {"root_policy": BROKEN_POLICIES["broken-invalidate-no-request"]}),
]
