"""A TD's mirror root at VM destruction (`kvm_mmu_uninit_tdp_mmu`): [TDXPREP], [RE-P2].
`RootPolicy` variants of v6.16, no hook needed; caught by the TDP MMU invariants."""

from dataclasses import replace

from ..kvm.mmu_role import POLICIES
from . import Mutant

FAMILY = "roots"

UNINIT_SHARED = replace(POLICIES["v6.16"], name="mutant-uninit-zap-shared",
                        uninit_zap_shared=True, broken="inv11")
UNINIT_NO_INVALIDATE = replace(POLICIES["v6.16"], name="mutant-uninit-no-invalidate",
                               uninit_invalidates=False, broken="inv13")

MUTANTS = [
    Mutant(
        "uninit-zap-mirror-shared",
        "kvm_mmu_uninit_tdp_mmu zaps the invalidated roots with mmu_lock held for read (the "
        "v6.6-v6.13 way) on a TD: the mirror root's S-EPT removal runs without the write lock",
        "[TDXPREP] (mirror SPTEs may only be removed with mmu_lock held for write; uninit "
        "takes the write lock since v6.14); invariant inv11",
        ("roots-vm-destroy-td",), "invariant:inv11", {"root_policy": UNINIT_SHARED}),
    Mutant(
        "uninit-no-invalidate",
        "kvm_mmu_uninit_tdp_mmu does not invalidate KVM_VALID_ROOTS: the mirror root, which "
        "nothing else ever invalidates, outlives the VM",
        "[TDXPREP] (uninit is the only place the mirror root is invalidated); [RE-P2] "
        "(private page tables are reclaimed at VM destruction); invariant inv13",
        ("roots-vm-destroy-td",), "invariant:inv13", {"root_policy": UNINIT_NO_INVALIDATE}),
]
