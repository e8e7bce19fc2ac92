"""RCU and the TDP MMU's lockless walkers: roots and page-table pages are freed through
`call_rcu(tdp_mmu_free_sp_rcu_callback)` so a walker inside `rcu_read_lock()` (lockless aging,
the fast page fault: `kvm_tdp_mmu_walk_lockless_begin/end`) never reads freed memory, and
`kvm_mmu_uninit_tdp_mmu` ends with `rcu_barrier()` ([S-TDX], [S-69]). Each mutant is a
`RootPolicy` variant; the lockless walker is `tdxedu.kvm.tdp_mmu.tdp_mmu_walk_lockless`."""

from dataclasses import replace

from ..kvm.mmu_role import POLICIES
from . import Mutant

FAMILY = "rcu"


def _v616(name: str, broken: str, **kw):
    return replace(POLICIES["v6.16"], name=f"mutant-{name}", broken=broken, **kw)


MUTANTS = [
    Mutant(
        "free-root-without-grace-period",
        "the last put frees the root at once (no call_rcu): a lockless walker that found it "
        "on the list reads freed memory",
        "[S-TDX] kvm_tdp_mmu_put_root (list_del_rcu, then call_rcu -> "
        "tdp_mmu_free_sp_rcu_callback); [S-69] (roots are RCU-protected for lockless walks)",
        ("roots-lockless-walk",), "rcu:use-after-free",
        {"root_policy": _v616("free-root-without-grace-period", "rcu", rcu_free_root=False)}),
    Mutant(
        "free-page-table-without-grace-period",
        "a zap frees the page-table pages it unlinks at once instead of after a grace period",
        "[S-TDX] handle_removed_pt -> call_rcu(tdp_mmu_free_sp_rcu_callback): 'lockless "
        "walkers ... never touch freed memory'",
        ("roots-lockless-walk",), "rcu:use-after-free",
        {"root_policy": _v616("free-page-table-without-grace-period", "rcu",
                              rcu_free_sp=False)}),
    Mutant(
        "lockless-walk-without-rcu-read-lock",
        "the lockless walker dereferences the roots list and page tables without "
        "rcu_read_lock() (no kvm_tdp_mmu_walk_lockless_begin)",
        "[S-TDX] kvm_tdp_mmu_walk_lockless_begin/end and for_each_tdp_mmu_root_rcu "
        "(rcu_dereference_check: lockdep's 'suspicious RCU usage' under CONFIG_PROVE_RCU)",
        ("roots-lockless-walk",), "lockdep:suspicious RCU usage",
        {"root_policy": _v616("lockless-walk-without-rcu-read-lock", "lockdep",
                              lockless_walk_rcu=False)}),
    Mutant(
        "lockless-walk-resched",
        "the lockless walker leaves its read-side section to reschedule mid-walk and goes on "
        "with the page-table pointer it had (no reference, no re-walk)",
        "[S-69] (only the yield-safe iterators may drop the lock, because they hold a root "
        "reference; tdp_mmu_iter_cond_resched restarts the walk from the root)",
        ("roots-lockless-walk",), "rcu:use-after-free",
        {"root_policy": _v616("lockless-walk-resched", "rcu", lockless_walk_resched=True)}),
    Mutant(
        "uninit-without-rcu-barrier",
        "kvm_mmu_uninit_tdp_mmu returns without rcu_barrier(): callbacks freeing roots and "
        "page tables may run after the VM is gone",
        "[S-69] [S-TDX] kvm_mmu_uninit_tdp_mmu (rcu_barrier() so every pending RCU free runs "
        "before the VM is torn down); invariant inv13",
        ("roots-vm-destroy",), "inv13:RCU frees pending",
        {"root_policy": _v616("uninit-without-rcu-barrier", "inv13",
                              rcu_barrier_at_uninit=False)}),
    Mutant(
        "rcu-barrier-before-zap",
        "kvm_mmu_uninit_tdp_mmu calls rcu_barrier() first and zaps the invalidated roots "
        "after it: the frees that zap queues are still pending when it returns",
        "[S-69] [S-TDX] kvm_mmu_uninit_tdp_mmu (zap, check, then rcu_barrier() last); "
        "invariant inv13",
        ("roots-vm-destroy",), "inv13:RCU frees pending",
        {"root_policy": _v616("rcu-barrier-before-zap", "inv13", rcu_barrier_first=True)}),
]
