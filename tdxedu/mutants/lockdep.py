"""Lock-mode assertions: where the kernel says `lockdep_assert_held_write()` /
`lockdep_assert_held()`, the model asserts the same (`tdxedu.kvm.locks`), and a variant that
takes the wrong lock mode is caught by that rule (``lockdep:``), not by what happens to go wrong
later: [K616] `tdx_track`, [S-TDX] `remove_external_spte` / `tdp_mmu_next_root` /
`handle_removed_pt`."""

from dataclasses import replace

from ..kvm.mmu_role import POLICIES
from . import Mutant, mutations

FAMILY = "lockdep"

ITER_UNLOCKED = replace(POLICIES["v6.16"], name="mutant-iterate-roots-unlocked",
                        iter_takes_mmu_lock=False, broken="lockdep")
FREE_ROOTS_UNLOCKED = replace(POLICIES["v6.16"], name="mutant-free-roots-unlocked",
                              free_roots_takes_lock=False, broken="lockdep")

MUTANTS = [
    Mutant(
        "gmem-zap-under-read-lock",
        "closing the guest_memfd zaps private leaves with mmu_lock held for read (the fault "
        "path's mode) instead of write",
        "[S-TDX] remove_external_spte: 'Zapping leaf spte is allowed only when write lock is "
        "held' (lockdep_assert_held_write); [K616] tdx_track asserts the same",
        ("teardown",), "lockdep:remove_external_spte",
        mutations("gmem-zap-under-read-lock")),
    Mutant(
        "zap-under-read-lock",
        "a runtime private->shared zap takes mmu_lock for read while vCPU 0 runs: BLOCK, TRACK "
        "and REMOVE could then race a concurrent fault",
        "[S-TDX] remove_external_spte (lockdep_assert_held_write(&kvm->mmu_lock)); [K616] "
        "tdx_track (the same assertion before TDH.MEM.TRACK)",
        ("zap-running",), "lockdep:remove_external_spte", mutations("zap-under-read-lock")),
    Mutant(
        "iterate-roots-unlocked",
        "a root reader (write-protecting a slot) walks the roots with the yield-safe iterator "
        "without holding mmu_lock",
        "[S-69] tdp_mmu_next_root (kvm_lockdep_assert_mmu_lock_held: either mode, but held); "
        "the roots list rule in kvm_host.h (readers need mmu_lock for read + RCU)",
        ("roots-last-put-race",), "lockdep:tdp_mmu_next_root", {"root_policy": ITER_UNLOCKED}),
    Mutant(
        "free-roots-unlocked",
        "kvm_mmu_free_roots puts the vCPU's root references without taking mmu_lock (an "
        "SMI/RSM unload racing a fast zap's walk of the roots)",
        "[M-610] kvm_mmu_free_roots (mmu_lock for read for TDP MMU roots since v6.9) and "
        "mmu_free_root_page (lockdep-asserted)",
        ("roots-smm-storm",), "lockdep:mmu_free_root_page",
        {"root_policy": FREE_ROOTS_UNLOCKED}),
]
