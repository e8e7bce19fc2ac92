"""Zapping a root's page tables while a vCPU still runs the guest on it: the request that
goes with invalidation must wait for every vCPU in guest mode to exit ([M-610]
kvm_mmu_zap_all_fast; KVM_REQ_MMU_FREE_OBSOLETE_ROOTS carries KVM_REQUEST_WAIT).
A `RootPolicy` variant of v6.16; caught by the TDP MMU check ``zap-in-guest``."""

from dataclasses import replace

from ..kvm.mmu_role import POLICIES
from . import Mutant

FAMILY = "roots"

NO_WAIT = replace(POLICIES["v6.16"], name="mutant-fast-zap-no-wait",
                  invalidate_request_waits=False, broken="zap-in-guest")

MUTANTS = [
    Mutant(
        "fast-zap-no-wait",
        "the memslot fast zap kicks the vCPUs with KVM_REQ_MMU_FREE_OBSOLETE_ROOTS but does not "
        "wait for them to leave guest mode before zapping the invalidated roots",
        "[M-610] kvm_mmu_zap_all_fast (kvm_make_all_cpus_request, a waiting request, in the "
        "same mmu_lock critical section as the invalidation); invariant zap-in-guest",
        ("roots-memslot-update",), "invariant:zap-in-guest", {"root_policy": NO_WAIT}),
]
