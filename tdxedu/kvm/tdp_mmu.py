"""TDP MMU roots: reference counting, invalidation, zapping and freeing — one code path for
every kernel version, steered by a `RootPolicy` (`mmu_role.py`).

Sources: torvalds/linux and kvm-x86/linux
`arch/x86/kvm/mmu/tdp_mmu.c` (v6.3-era copy read for `kvm_tdp_mmu_put_root`,
`kvm_tdp_mmu_invalidate_all_roots`, `tdp_mmu_zap_root_work`, `kvm_tdp_mmu_get_vcpu_root_hpa`,
`kvm_mmu_uninit_tdp_mmu`), `arch/x86/kvm/mmu/mmu.c` (`kvm_mmu_free_roots`,
`kvm_mmu_zap_all_fast`, `kvm_mmu_free_obsolete_roots`, `kvm_mmu_load`) and the mails named in
the bibliography: the TDP MMU at [S-510], [S-69], [M-610] and [S-TDX], and the series that
changed it ([OVH22], [SC-preserve], [ASYNC-RM], [RDLOCK], [TDXPREP]). Behaviour is described in
our own code.

What is modelled
* A root is a `KvmMmuPage` with a role, `tdp_mmu_root_count`, the v6.6+
  `tdp_mmu_scheduled_root_to_zap` flag and a small model of its page tables: the set of
  non-root page-table pages (`sps`, counted in `kvm.arch.tdp_mmu_pages`) and of mapped GFNs
  (`leafs`). A fault at a GFN links one page-table page per level below the root.
* Every reference has a named holder (`refs`): `"tdp_mmu"` (the TDP MMU's own reference,
  v6.4+), `"tdp_mmu_zap_wq"` (the work item's, v6.3–v6.5), `"vcpu0.root"`, `"vcpu0.prev1"`,
  `"vcpu0.mirror"`, `"iter:<actor>"` (a yield-safe iterator). The kernel keeps only the count;
  the holders are the model's explanation of it and are checked against it ("inv-refs").
* VM state lives in `kvm.arch` (`tdp_mmu_roots`, `tdp_mmu_pages`, `tdp_mmu_zap_wq`, pending
  `call_rcu` callbacks, statistics); vCPU state in `vcpu.arch.mmu` (`root_hpa`, `prev_roots`,
  `mirror_root_hpa`, `root_role`).
* Operations that take `mmu_lock` or may be preempted are generators (`yield from` them, or
  drive them with `tdxedu.trace.run_to_completion`). When no worker thread runs
  (`kvm.arch.tdp_mmu_inline_worker`), `flush_workqueue` runs queued work itself.
* Errors that are events (a get from zero, a zap at refcount 0, an invalidation without the
  write lock, a fast zap returning with SPTEs in a root it invalidated) are recorded in
  `kvm.arch.tdp_mmu_errors` with their invariant number (`INVARIANTS`) at the step they happen;
  `tdp_mmu_invariants(kvm)` (tdp_mmu_invariants.py) reports them with the state checks.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from ..trace import PREEMPT, Preempt, WaitUntil
from .kvm import IN_GUEST_MODE, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, OUTSIDE_GUEST_MODE, Kvm, KvmVcpu
from .locks import lockdep_assert_held, lockdep_assert_held_write, lockdep_report
from .mmu_role import (
    KVM_ALL_ROOTS,
    KVM_DIRECT_ROOTS,
    KVM_INVALID_ROOTS,
    KVM_MIRROR_ROOTS,
    KVM_VALID_ROOTS,
    KvmMmuPageRole,
    RootPolicy,
    root_types_str,
    tdp_mmu_policy,
)

SRC_TDP = "arch/x86/kvm/mmu/tdp_mmu.c"
SRC_MMU = "arch/x86/kvm/mmu/mmu.c"
KVM_MMU_NUM_PREV_ROOTS = 3
KVM_MMU_ROOT_CURRENT = "current"
KVM_MMU_ROOTS_ALL = "all"
TDP_MMU_HOLDER = "tdp_mmu"
WQ_HOLDER = "tdp_mmu_zap_wq"
RET_PF_FIXED = "RET_PF_FIXED"
RET_PF_RETRY = "RET_PF_RETRY"
#: GFN bit that marks a shared (direct) GPA in a TD; below it, GPAs are private (mirror root).
TDX_SHARED_GFN_BIT = 1 << 30


@dataclass(eq=False)
class KvmMmuPage:
    """A TDP MMU root (`struct kvm_mmu_page` with `role.level` = root level)."""

    hpa: int
    role: KvmMmuPageRole
    tdp_mmu_root_count: int = 0
    refs: Counter = field(default_factory=Counter)
    tdp_mmu_scheduled_root_to_zap: bool = False  # v6.6+ ([ASYNC-RM])
    tdp_mmu_async_queued: bool = False  # v6.3–v6.5: work item queued or running
    on_list: bool = True  # linked on kvm->arch.tdp_mmu_roots
    rcu_pending: bool = False  # call_rcu() issued, grace period not over
    rcu_seq: int = 0  # the RCU callback sequence number of that call_rcu
    freed: bool = False  # tdp_mmu_free_sp_rcu_callback ran
    dying: bool = False  # v6.3: count hit 0 while valid, put_root still deciding
    zapping: bool = False  # model only: between the scheduled flag's clear and the put
    sps: set = field(default_factory=set)  # non-root page-table pages: (level, index)
    leafs: set = field(default_factory=set)  # mapped GFNs
    ever_invalid: bool = False

    @property
    def invalid(self) -> bool:
        return self.role.invalid

    def present(self) -> bool:
        return bool(self.sps or self.leafs)

    def state(self) -> tuple:
        return (self.hpa, self.role.word, self.tdp_mmu_root_count,
                tuple(sorted((k, v) for k, v in self.refs.items() if v)),
                self.tdp_mmu_scheduled_root_to_zap, self.tdp_mmu_async_queued, self.on_list,
                self.rcu_pending, self.rcu_seq, self.freed, self.dying, len(self.sps),
                len(self.leafs))

    def __str__(self) -> str:
        return f"root#{self.hpa}[{self.role}] count={self.tdp_mmu_root_count}"

    __repr__ = __str__


@dataclass(eq=False)
class KvmMmu:
    """The parts of `struct kvm_mmu` (vcpu->arch.root_mmu) that hold root references."""

    root_role: KvmMmuPageRole
    root_hpa: KvmMmuPage | None = None  # None = INVALID_PAGE
    prev_roots: list = field(default_factory=lambda: [None] * KVM_MMU_NUM_PREV_ROOTS)
    mirror_root_hpa: KvmMmuPage | None = None  # TDX ([TDXPREP])

    def slots(self):
        """(holder suffix, root) for every slot that owns a reference."""
        yield "root", self.root_hpa
        for i, r in enumerate(self.prev_roots):
            yield f"prev{i}", r
        yield "mirror", self.mirror_root_hpa


# --- setup ------------------------------------------------------------------------------------


def kvm_mmu_init_tdp_mmu(kvm: Kvm, policy: str | RootPolicy = "v6.16", *,
                         has_mirrored_tdp: bool = False, inline_worker: bool = True) -> None:
    """Per-VM TDP MMU state (kvm_mmu_init_tdp_mmu). `has_mirrored_tdp` = a TD (TDX VM type)."""
    if not isinstance(kvm, Kvm):
        raise TypeError(f"kvm must be a Kvm, got {type(kvm).__name__}")
    pol = tdp_mmu_policy(policy)
    if has_mirrored_tdp and not pol.root_types:
        raise ValueError(f"policy {pol.name!r} predates mirror roots (v6.14); a TD needs a "
                         "policy with root types, e.g. 'v6.16'")
    a = kvm.arch
    a.tdp_mmu_enabled = True
    a.tdp_mmu_policy = pol
    a.has_mirrored_tdp = bool(has_mirrored_tdp)
    a.tdp_mmu_roots = []
    a.tdp_mmu_pages = 0
    a.tdp_mmu_zap_wq = deque() if pol.zap_via == "workqueue" else None
    a.tdp_mmu_worker_busy = None
    a.tdp_mmu_inline_worker = inline_worker
    a.tdp_mmu_rcu_callbacks = []
    # RCU ([S-TDX]): readers in a read-side critical section (who -> the callback sequence
    # number when it began), the sequence stamped on each call_rcu, page-table pages a zap
    # unlinked that wait for a grace period, and those freed (by generation: a (root, level,
    # index) page linked again later is a new page).
    a.rcu_readers = {}
    a.rcu_seq = 0
    a.tdp_mmu_sp_gen = {}  # (root hpa, sp key) -> generation of the page linked there now
    a.tdp_mmu_sp_rcu = []  # (seq, (root hpa, sp key, generation)) queued by call_rcu
    a.tdp_mmu_sp_freed = set()  # (root hpa, sp key, generation) after its free
    a.tdp_mmu_live = {}  # hpa -> root, until freed with no page tables left (accounting)
    a.tdp_mmu_stats = Counter()
    a.tdp_mmu_errors = []
    a.tdp_mmu_warnings = []  # WARN_ON / WARN_ON_ONCE that fired (an alarm for check-mutants)
    a.tdp_mmu_next_hpa = 1
    a.tdp_mmu_uninit = "no"  # no / running / done
    a.tdp_mmu_fast_zaps = 0
    a.tdp_mmu_roles_seen = set()  # role words ever allocated (for "reallocated" counts)


def kvm_mmu_create(vcpu: KvmVcpu, *, level: int = 4) -> None:
    """Per-vCPU MMU state (kvm_mmu_create + init_kvm_tdp_mmu)."""
    vcpu.arch.smm = False
    vcpu.arch.guest_mode = False
    vcpu.arch.tdp_level = level
    vcpu.arch.mmu = KvmMmu(root_role=KvmMmuPageRole(level=level))
    vcpu.arch.mmu.root_role = kvm_mmu_calc_root_role(vcpu)


def kvm_mmu_calc_root_role(vcpu: KvmVcpu) -> KvmMmuPageRole:
    """The role a vCPU's direct root must have now (kvm_calc_tdp_mmu_root_page_role)."""
    return KvmMmuPageRole(level=vcpu.arch.tdp_level, smm=vcpu.arch.smm,
                          guest_mode=vcpu.arch.guest_mode)


def _pol(kvm: Kvm) -> RootPolicy:
    return kvm.arch.tdp_mmu_policy


def _err(kvm: Kvm, inv: str, msg: str) -> None:
    kvm.arch.tdp_mmu_errors.append(f"{inv}: {msg}")
    kvm.trace.emit("VIOLATION", inv, msg, source="tdxedu/kvm/tdp_mmu_invariants.py")


def _warn(kvm: Kvm, op: str, msg: str) -> None:
    """A WARN_ON / WARN_ON_ONCE of tdp_mmu.c: kept in state (`tdp_mmu_warnings`), not only in
    the trace, so a world's conditions can read it."""
    kvm.arch.tdp_mmu_warnings.append(f"{op}: {msg}")
    kvm.trace.emit(op, msg, source=SRC_TDP)


def _touch(kvm: Kvm, root: KvmMmuPage, what: str) -> None:
    """Any access to a root after its RCU callback ran is a use after free (inv6)."""
    if root.freed:
        _err(kvm, "inv6", f"{what} touches {root} after it was freed")


def _who(kvm: Kvm, who: str | None) -> str:
    return who if who is not None else kvm.trace.actor


def _lock(kvm: Kvm, who: str, shared: bool):
    if shared:
        yield from kvm.mmu_lock.read_lock(who)
    else:
        yield from kvm.mmu_lock.write_lock(who)


def kvm_lockdep_assert_mmu_lock_held(kvm: Kvm, shared: bool | None, where: str) -> None:
    """`kvm_lockdep_assert_mmu_lock_held(kvm, shared)` (tdp_mmu.c, [S-TDX]): held for read when
    `shared`, for write when not; `None` = either mode (`tdp_mmu_next_root`)."""
    if shared is None:
        lockdep_assert_held(kvm.mmu_lock, where)
    elif shared:
        if not kvm.mmu_lock.readers:
            lockdep_report(kvm.mmu_lock, f"{where}: lockdep_assert_held_read("
                                         f"{kvm.mmu_lock.name}) failed")
    else:
        lockdep_assert_held_write(kvm.mmu_lock, where)


def _unlock(kvm: Kvm, who: str, shared: bool) -> None:
    if shared:
        kvm.mmu_lock.read_unlock(who)
    else:
        kvm.mmu_lock.write_unlock(who)


# --- get / put --------------------------------------------------------------------------------


def kvm_tdp_mmu_get_root(kvm: Kvm, root: KvmMmuPage, holder: str) -> bool:
    """Increment unless zero (refcount_inc_not_zero): a root at 0 cannot be revived (inv5).

    Source: kvm_tdp_mmu_get_root, arch/x86/kvm/mmu/tdp_mmu.h; [OVH22] (commit 614f6970aa70)."""
    _touch(kvm, root, "kvm_tdp_mmu_get_root")
    if root.tdp_mmu_root_count <= 0:
        if _pol(kvm).get_if_not_zero:
            return False
        _err(kvm, "inv5", f"{holder} acquired {root} at refcount 0")
    root.tdp_mmu_root_count += 1
    root.refs[holder] += 1
    return True


def kvm_tdp_mmu_put_root(kvm: Kvm, root: KvmMmuPage, holder: str, *, shared: bool):
    """Drop `holder`'s reference; at zero, decide the root's fate by policy (generator).

    v6.3 ([OVH22], tdp_mmu.c of that era): at zero on a *valid* root, atomically mark it invalid
    (kvm_tdp_root_mark_invalid), set the count back to 1 for the worker and queue the zap — the
    queueing is mandatory because invalidate-all skips invalid roots. At zero on an invalid root:
    unlink and free after a grace period. Under the read lock the "count 0 but valid" window is
    visible to other readers, so the model yields there.
    v6.4+ ([SC-preserve]; [S-69]): zero on a valid root is a bug (KVM_BUG_ON); zero means unlink +
    call_rcu.
    """
    pol = _pol(kvm)
    _touch(kvm, root, "kvm_tdp_mmu_put_root")
    if root.refs[holder] <= 0:
        _err(kvm, "inv-refs", f"{holder} puts {root} without holding a reference")
    root.refs[holder] -= 1
    if root.refs[holder] == 0:
        del root.refs[holder]
    root.tdp_mmu_root_count -= 1
    kvm.trace.emit("kvm_tdp_mmu_put_root", f"root#{root.hpa}", holder,
                   f"count={root.tdp_mmu_root_count}", source=SRC_TDP)
    if root.tdp_mmu_root_count < 0:
        _err(kvm, "inv1", f"{root} refcount went negative (refcount_t underflow WARN)")
        return
    if root.tdp_mmu_root_count > 0:
        return
    if not root.invalid:
        if pol.zero_on_valid == "resurrect":
            root.dying = True
            if shared:
                yield Preempt("put_root: count 0 but valid")
            was_invalid = root.invalid  # the xchg of the role word
            _set_invalid(root)
            root.dying = False
            if not was_invalid:
                root.tdp_mmu_root_count = 1
                root.refs[WQ_HOLDER] += 1
                kvm.arch.tdp_mmu_stats["roots_resurrected"] += 1
                if shared:
                    kvm.arch.tdp_mmu_stats["roots_resurrected_shared"] += 1
                kvm.trace.emit("kvm_tdp_root_mark_invalid", f"root#{root.hpa}",
                               "refcount_set(1)", source=SRC_TDP + " (v6.3)")
                if pol.resurrect_schedules_zap:
                    tdp_mmu_schedule_zap_root(kvm, root)
                return
        elif pol.zero_on_valid == "bug":
            kvm.kvm_bug_on(True, f"kvm_tdp_mmu_put_root: {root} reached 0 while valid")
            _err(kvm, "inv2", f"{root} reached refcount 0 while valid (KVM_BUG_ON)")
        else:  # broken "free": no invalid check
            pass
    _free_root(kvm, root)


def _free_root(kvm: Kvm, root: KvmMmuPage) -> None:
    """Unlink (list_del_rcu under tdp_mmu_pages_lock) and call_rcu the free: lockless walkers
    that already found the root may still read it until their read-side section ends."""
    if not root.invalid:
        _err(kvm, "inv2", f"freeing {root} while it is still valid")
    if root.on_list:
        kvm.arch.tdp_mmu_roots.remove(root)
        root.on_list = False
    if not _pol(kvm).rcu_free_root:  # broken variant: freed at once, no grace period
        kvm.trace.emit("free_page", f"root#{root.hpa}", "no grace period", source=SRC_TDP)
        _root_freed(kvm, root)
        return
    root.rcu_pending = True
    root.rcu_seq = kvm.arch.rcu_seq
    kvm.arch.rcu_seq += 1
    kvm.arch.tdp_mmu_rcu_callbacks.append(root)
    kvm.trace.emit("call_rcu", f"root#{root.hpa}", "tdp_mmu_free_sp_rcu_callback", source=SRC_TDP)


def _root_freed(kvm: Kvm, root: KvmMmuPage) -> None:
    root.rcu_pending = False
    root.freed = True
    kvm.arch.tdp_mmu_stats["roots_freed"] += 1
    if not root.present():
        kvm.arch.tdp_mmu_live.pop(root.hpa, None)


def _set_invalid(root: KvmMmuPage) -> None:
    if not root.role.invalid:
        root.role = root.role.with_invalid()
        root.ever_invalid = True


# --- RCU --------------------------------------------------------------------------------------


def rcu_read_lock(kvm: Kvm, who: str) -> None:
    """Enter a read-side critical section (`kvm_tdp_mmu_walk_lockless_begin`, [S-TDX]): no
    callback queued from now on may run before the matching `rcu_read_unlock`."""
    kvm.arch.rcu_readers[who] = kvm.arch.rcu_seq
    kvm.trace.emit("rcu_read_lock", who, source="include/linux/rcupdate.h")


def rcu_read_unlock(kvm: Kvm, who: str) -> None:
    kvm.arch.rcu_readers.pop(who, None)
    kvm.trace.emit("rcu_read_unlock", who, source="include/linux/rcupdate.h")


def _gp_blocked(kvm: Kvm, seq: int) -> bool:
    """A callback queued at `seq` waits for every reader that began before it was queued."""
    return any(start <= seq for start in kvm.arch.rcu_readers.values())


def rcu_callbacks_ready(kvm: Kvm) -> bool:
    a = kvm.arch
    return (any(not _gp_blocked(kvm, r.rcu_seq) for r in a.tdp_mmu_rcu_callbacks)
            or any(not _gp_blocked(kvm, seq) for seq, _ in a.tdp_mmu_sp_rcu))


def rcu_callbacks_pending(kvm: Kvm) -> bool:
    return bool(kvm.arch.tdp_mmu_rcu_callbacks or kvm.arch.tdp_mmu_sp_rcu)


def rcu_grace_period(kvm: Kvm) -> int:
    """A grace period ends: every call_rcu callback not held back by a reader that began
    before it was queued runs (`tdp_mmu_free_sp_rcu_callback` frees the root or page-table
    page). Returns how many roots were freed."""
    a = kvm.arch
    run = [r for r in a.tdp_mmu_rcu_callbacks if not _gp_blocked(kvm, r.rcu_seq)]
    a.tdp_mmu_rcu_callbacks = [r for r in a.tdp_mmu_rcu_callbacks if r not in run]
    for root in run:
        _root_freed(kvm, root)
        kvm.trace.emit("tdp_mmu_free_sp_rcu_callback", f"root#{root.hpa}", source=SRC_TDP)
    sps = [(seq, sp) for seq, sp in a.tdp_mmu_sp_rcu if not _gp_blocked(kvm, seq)]
    if sps:
        a.tdp_mmu_sp_rcu = [e for e in a.tdp_mmu_sp_rcu if e not in sps]
        a.tdp_mmu_sp_freed.update(sp for _, sp in sps)
        kvm.trace.emit("tdp_mmu_free_sp_rcu_callback", f"{len(sps)} page tables",
                       source=SRC_TDP)
    return len(run)


def rcu_barrier(kvm: Kvm) -> None:
    """Wait for every queued RCU callback (kvm_mmu_uninit_tdp_mmu ends with rcu_barrier());
    the caller first waits until no reader holds one back (`rcu_callbacks_blocked`)."""
    rcu_grace_period(kvm)


def rcu_callbacks_blocked(kvm: Kvm) -> bool:
    a = kvm.arch
    return (any(_gp_blocked(kvm, r.rcu_seq) for r in a.tdp_mmu_rcu_callbacks)
            or any(_gp_blocked(kvm, seq) for seq, _ in a.tdp_mmu_sp_rcu))


def _rcu_uaf(kvm: Kvm, who: str, what: str) -> None:
    _err(kvm, "rcu", f"use-after-free: {who}'s lockless walk reads {what}, freed without a "
                     "grace period covering its read-side section")


def tdp_mmu_walk_lockless(kvm: Kvm, who: str, *, levels: int = 2):
    """A lockless walker (generator): `kvm_tdp_mmu_walk_lockless_begin` (rcu_read_lock), walk
    every root on the list and, in each, the page tables down one GFN's path
    (`for_each_tdp_mmu_root_rcu` + `tdp_mmu_for_each_pte`, as lockless aging and the fast page
    fault do), one level per step, then `..._end` (rcu_read_unlock). No mmu_lock, no root
    reference: only RCU keeps what it reads alive ([S-TDX]). Reading a root or page table
    that was freed is a use-after-free (``rcu``); dereferencing outside a read-side section
    with no mmu_lock is lockdep's "suspicious RCU usage"."""
    pol = _pol(kvm)
    a = kvm.arch
    if pol.lockless_walk_rcu:
        rcu_read_lock(kvm, who)
    for root in list(a.tdp_mmu_roots):  # list_for_each_entry_rcu
        yield Preempt("lockless walk: next root")
        if who not in a.rcu_readers and not kvm.mmu_lock.held():
            lockdep_report(kvm.mmu_lock, f"suspicious RCU usage: {who}: "
                                         "rcu_dereference_check() without rcu_read_lock() "
                                         "in for_each_tdp_mmu_root_rcu")
        if root.freed:
            _rcu_uaf(kvm, who, str(root))
            break
        path = sorted(root.sps, key=lambda k: -k[0])[:levels]
        held = [(root.hpa, k, a.tdp_mmu_sp_gen.get((root.hpa, k), 0)) for k in path]
        for sp in held:
            if pol.lockless_walk_resched:  # broken: cond_resched inside the walk
                rcu_read_unlock(kvm, who)
                yield Preempt("lockless walk: cond_resched")
                rcu_read_lock(kvm, who)
            else:
                yield Preempt("lockless walk: next level")
            if sp in a.tdp_mmu_sp_freed:
                _rcu_uaf(kvm, who, f"page table {sp[1]} of root#{sp[0]}")
                break
        kvm.trace.emit("kvm_tdp_mmu_age_gfn_range", who, f"root#{root.hpa}", "lockless",
                       source=SRC_TDP)
    if who in a.rcu_readers:
        rcu_read_unlock(kvm, who)


# --- root allocation --------------------------------------------------------------------------


def tdp_mmu_root_match(root: KvmMmuPage, types: int) -> bool:
    """tdp_mmu_root_match ([S-TDX]): invalid roots only with KVM_INVALID_ROOTS; then by type."""
    if root.invalid and not types & KVM_INVALID_ROOTS:
        return False
    if root.role.is_mirror:
        return bool(types & KVM_MIRROR_ROOTS)
    return bool(types & KVM_DIRECT_ROOTS)


def _alloc_root(kvm: Kvm, role: KvmMmuPageRole, holder: str) -> KvmMmuPage:
    a = kvm.arch
    root = KvmMmuPage(a.tdp_mmu_next_hpa, role)
    a.tdp_mmu_next_hpa += 1
    # trace_kvm_mmu_get_page(sp, true) fires in tdp_mmu_init_sp before the count is set ([S-69];
    # `arch/x86/kvm/mmutrace.h`).
    kvm.trace.emit("kvm_mmu_get_page", f"root#{root.hpa}", str(role), "new", source=SRC_TDP)
    pol = _pol(kvm)
    root.tdp_mmu_root_count = pol.initial_refcount
    root.refs[holder] += 1
    if pol.initial_refcount == 2:
        root.refs[TDP_MMU_HOLDER] += 1
    a.tdp_mmu_roots.insert(0, root)  # list_add_rcu adds at the head
    a.tdp_mmu_live[root.hpa] = root
    a.tdp_mmu_stats["roots_allocated"] += 1
    a.tdp_mmu_roles_seen.add(role.word)
    a.tdp_mmu_stats["roots_allocated_mirror" if role.is_mirror else
                    "roots_allocated_direct"] += 1
    return root


def _find_root(kvm: Kvm, role: KvmMmuPageRole, holder: str) -> KvmMmuPage | None:
    """Walk valid roots of the role's address space and take a reference on a role match.
    Matching is on the whole role word (invalid included), so an invalid root never matches."""
    for root in kvm.arch.tdp_mmu_roots:
        if root.role.word == role.word and kvm_tdp_mmu_get_root(kvm, root, holder):
            return root
    return None


def kvm_tdp_mmu_get_vcpu_root_hpa(vcpu: KvmVcpu, *, mirror: bool = False):
    """Find or allocate the vCPU's root (generator returning the root).

    v6.3–v6.8: `kvm_tdp_mmu_get_vcpu_root_hpa`, caller holds mmu_lock for write, so search and
    allocation are one atomic step. v6.9+: `kvm_tdp_mmu_alloc_root` ([RDLOCK]) runs under
    the read lock: a lockless search, then a re-check under `tdp_mmu_pages_lock` before the
    allocation, because another vCPU may have allocated the same role in between (inv7).
    The model yields between the two, so the explorer can show why the re-check exists."""
    kvm = vcpu.kvm
    pol = _pol(kvm)
    mmu = vcpu.arch.mmu
    role = (KvmMmuPageRole(level=mmu.root_role.level, is_mirror=True) if mirror
            else mmu.root_role)
    holder = f"{vcpu.name}.{'mirror' if mirror else 'root'}"
    root = _find_root(kvm, role, holder)
    if root is None and pol.rdlock_roots:
        yield Preempt("alloc_root: search missed, before tdp_mmu_pages_lock")
        root = _find_root(kvm, role, holder)  # re-check under tdp_mmu_pages_lock
    if root is not None:
        kvm.arch.tdp_mmu_stats["roots_reused"] += 1
        kvm.trace.emit(pol.alloc_fn, vcpu.name, f"root#{root.hpa}", "reuse", source=SRC_TDP)
        return root
    root = _alloc_root(kvm, role, holder)
    kvm.trace.emit(pol.alloc_fn, vcpu.name, f"root#{root.hpa}", "alloc", source=SRC_TDP)
    return root


def mmu_alloc_direct_roots(vcpu: KvmVcpu):
    """mmu_alloc_direct_roots (mmu.c): lock, mirror root first if the VM mirrors TDP and the
    vCPU has none yet ([TDXPREP]: avoids a second reference after a fast zap), then the direct
    root. Lock mode: write before v6.9, read from v6.9 ([RDLOCK])."""
    kvm = vcpu.kvm
    shared = _pol(kvm).rdlock_roots
    yield from _lock(kvm, vcpu.name, shared)
    mmu = vcpu.arch.mmu
    if kvm.arch.has_mirrored_tdp and mmu.mirror_root_hpa is None:
        mmu.mirror_root_hpa = yield from kvm_tdp_mmu_get_vcpu_root_hpa(vcpu, mirror=True)
    mmu.root_hpa = yield from kvm_tdp_mmu_get_vcpu_root_hpa(vcpu)
    _unlock(kvm, vcpu.name, shared)


def kvm_mmu_load(vcpu: KvmVcpu):
    """kvm_mmu_load: allocate roots, then flush the current TLB context for the new root —
    the reason zapping an invalid root needs no TLB flush ([M-610] `kvm_mmu_load`)."""
    yield from mmu_alloc_direct_roots(vcpu)
    vcpu.kvm.trace.emit("kvm_mmu_load", vcpu.name, f"root#{vcpu.arch.mmu.root_hpa.hpa}",
                        "flush current TLB", source=SRC_MMU)


def kvm_mmu_reload(vcpu: KvmVcpu):
    """kvm_mmu_reload: load only if `root.hpa` is INVALID_PAGE (the mirror is not checked)."""
    if vcpu.arch.mmu.root_hpa is None:
        yield from kvm_mmu_load(vcpu)


# --- freeing vCPU roots -----------------------------------------------------------------------


def _mmu_free_root_page(vcpu: KvmVcpu, slot: str, shared: bool):
    """`mmu_free_root_page`: put the slot's reference, mmu_lock held in the mode the caller
    took it (asserted: read for TDP MMU roots since v6.9, [M-610] [S-TDX])."""
    kvm_lockdep_assert_mmu_lock_held(vcpu.kvm, shared, "mmu_free_root_page")
    mmu = vcpu.arch.mmu
    if slot == "root":
        root, mmu.root_hpa = mmu.root_hpa, None
    elif slot == "mirror":
        root, mmu.mirror_root_hpa = mmu.mirror_root_hpa, None
    else:
        i = int(slot[4:])
        root, mmu.prev_roots[i] = mmu.prev_roots[i], None
    if root is not None:
        yield from kvm_tdp_mmu_put_root(vcpu.kvm, root, f"{vcpu.name}.{slot}", shared=shared)


def kvm_mmu_free_roots(vcpu: KvmVcpu, roots_to_free=KVM_MMU_ROOTS_ALL, *, only_obsolete=False):
    """kvm_mmu_free_roots (mmu.c): put the current and/or previous roots' references.
    The mirror root is *not* freed here ([TDXPREP]: it lives until kvm_mmu_destroy).
    Lock: write before v6.9, read from v6.9 ("Free TDP MMU roots while holding mmu_lock for
    read", `576a15de8d29`)."""
    if roots_to_free not in (KVM_MMU_ROOTS_ALL, KVM_MMU_ROOT_CURRENT):
        raise ValueError(f"roots_to_free must be {KVM_MMU_ROOTS_ALL!r} or "
                         f"{KVM_MMU_ROOT_CURRENT!r}, got {roots_to_free!r}")
    kvm = vcpu.kvm
    mmu = vcpu.arch.mmu
    slots = ["root"] + ([f"prev{i}" for i in range(KVM_MMU_NUM_PREV_ROOTS)]
                        if roots_to_free == KVM_MMU_ROOTS_ALL else [])
    todo = [s for s in slots if dict(mmu.slots())[s] is not None]
    if only_obsolete:
        todo = [s for s in todo if dict(mmu.slots())[s].invalid]
    if not todo:
        return
    shared = _pol(kvm).rdlock_roots
    locked = _pol(kvm).free_roots_takes_lock  # False only for a broken variant
    if locked:
        yield from _lock(kvm, vcpu.name, shared)
    for s in todo:
        yield from _mmu_free_root_page(vcpu, s, shared)
    if locked:
        _unlock(kvm, vcpu.name, shared)


def kvm_mmu_unload(vcpu: KvmVcpu):
    """kvm_mmu_unload: free current and previous roots (not the mirror root)."""
    vcpu.kvm.trace.emit("kvm_mmu_unload", vcpu.name, source=SRC_MMU)
    yield from kvm_mmu_free_roots(vcpu, KVM_MMU_ROOTS_ALL)


def kvm_mmu_reset_context(vcpu: KvmVcpu):
    """kvm_mmu_reset_context: unload every root, recompute the role; the next entry loads."""
    yield from kvm_mmu_unload(vcpu)
    vcpu.arch.mmu.root_role = kvm_mmu_calc_root_role(vcpu)


def kvm_smm_changed(vcpu: KvmVcpu, entering_smm: bool):
    """SMI (enter_smm) or RSM: flip HF_SMM_MASK and reset the MMU context (arch/x86/kvm/smm.c
    kvm_smm_changed). This unload is what the 2023 report hit on every SMI/RSM ([SC-Apr23-diag])."""
    if not isinstance(entering_smm, bool):
        raise TypeError("entering_smm must be a bool")
    if vcpu.kvm.arch.has_mirrored_tdp:
        # Unverified in source here: KVM reports SMIs as not allowed for a TD vCPU
        # (vt_smi_allowed, arch/x86/kvm/vmx/main.c); TDX has no SMM.
        raise ValueError(f"{vcpu.name} belongs to a TD: TDX guests have no SMM")
    if vcpu.arch.smm == entering_smm:
        raise ValueError(f"{vcpu.name} is {'already' if entering_smm else 'not'} in SMM")
    vcpu.kvm.trace.emit("kvm_smm_changed", vcpu.name, "SMI" if entering_smm else "RSM",
                        source="arch/x86/kvm/smm.c")
    vcpu.arch.smm = entering_smm
    yield from kvm_mmu_reset_context(vcpu)


def is_obsolete_root(root: KvmMmuPage | None) -> bool:
    """is_obsolete_root/is_obsolete_sp: a TDP root is obsolete iff invalid (no generation)."""
    return root is not None and root.invalid


def kvm_mmu_free_obsolete_roots(vcpu: KvmVcpu):
    """Handler of KVM_REQ_MMU_FREE_OBSOLETE_ROOTS: free obsolete current/previous roots."""
    yield from kvm_mmu_free_roots(vcpu, KVM_MMU_ROOTS_ALL, only_obsolete=True)


def kvm_mmu_destroy(vcpu: KvmVcpu):
    """kvm_mmu_destroy (vCPU destruction): unload, then put the mirror root's reference — the
    only place it is dropped ([TDXPREP]); read lock."""
    yield from kvm_mmu_unload(vcpu)
    kvm = vcpu.kvm
    if vcpu.arch.mmu.mirror_root_hpa is not None:
        yield from kvm.mmu_lock.read_lock(vcpu.name)
        yield from _mmu_free_root_page(vcpu, "mirror", True)
        kvm.mmu_lock.read_unlock(vcpu.name)


# --- guest entry and faults -------------------------------------------------------------------


def vcpu_enter_guest(vcpu: KvmVcpu):
    """vcpu_enter_guest, reduced to what roots need: service KVM_REQ_MMU_FREE_OBSOLETE_ROOTS,
    kvm_mmu_reload, enter guest mode (a preemption point: the vCPU runs the guest), exit."""
    kvm = vcpu.kvm
    if KVM_REQ_MMU_FREE_OBSOLETE_ROOTS in vcpu.requests:
        vcpu.requests.discard(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)
        yield from kvm_mmu_free_obsolete_roots(vcpu)
    yield from kvm_mmu_reload(vcpu)
    if kvm.vm_dead:
        return False
    mmu = vcpu.arch.mmu
    for r in (mmu.root_hpa, mmu.mirror_root_hpa):
        if r is not None and r.invalid:
            _err(kvm, "inv8", f"{vcpu.name} enters the guest on invalid {r}")
        if r is not None:
            _touch(kvm, r, f"{vcpu.name} VM-entry")
    vcpu.mode = IN_GUEST_MODE
    kvm.trace.emit("vm_entry", vcpu.name, f"root#{mmu.root_hpa.hpa}", source="arch/x86/kvm/x86.c")
    yield PREEMPT
    vcpu.mode = OUTSIDE_GUEST_MODE
    vcpu.kicked = False
    return True


def kvm_tdp_mmu_map(vcpu: KvmVcpu, gfn: int):
    """EPT violation → kvm_tdp_mmu_map under the read lock: link one page-table page per level
    below the root that is still missing (tdp_mmu_link_sp + tdp_account_mmu_page, +1 on
    tdp_mmu_pages each) and map the GFN. Private GFNs of a TD go to the mirror root ([TDXPREP]).
    A fault on an obsolete root is stale and retried (is_page_fault_stale)."""
    if not isinstance(gfn, int) or gfn < 0:
        raise ValueError(f"gfn must be a non-negative int, got {gfn!r}")
    kvm = vcpu.kvm
    mmu = vcpu.arch.mmu
    private = kvm.arch.has_mirrored_tdp and not gfn & TDX_SHARED_GFN_BIT
    yield from kvm.mmu_lock.read_lock(vcpu.name)
    root = mmu.mirror_root_hpa if private else mmu.root_hpa
    if root is None or root.invalid:
        kvm.mmu_lock.read_unlock(vcpu.name)
        kvm.trace.emit("kvm_tdp_mmu_map", vcpu.name, gfn, status=RET_PF_RETRY, source=SRC_TDP)
        return RET_PF_RETRY
    _touch(kvm, root, "kvm_tdp_mmu_map")
    for level in range(root.role.level - 1, 0, -1):
        key = (level, gfn >> (9 * level))
        if key not in root.sps:
            root.sps.add(key)
            g = (root.hpa, key)
            kvm.arch.tdp_mmu_sp_gen[g] = kvm.arch.tdp_mmu_sp_gen.get(g, 0) + 1
            kvm.arch.tdp_mmu_pages += 1
            kvm.arch.tdp_mmu_stats["sp_allocated"] += 1
    ops = getattr(kvm.arch, "external_ops", None)
    if ops is not None and root.role.is_mirror:
        # link_external_spt per new table + set_external_spte (TDX: SEPT.ADD, PAGE.AUG)
        err = yield from ops.map_external(kvm, gfn, vcpu)
        if err is not None:  # -EBUSY -> RET_PF_RETRY; keep only the tables TDX linked
            for level in range(root.role.level - 1, 0, -1):
                key = (level, gfn >> (9 * level))
                if key in root.sps and not ops.has_external_spt(kvm, level, key[1]):
                    root.sps.discard(key)
                    kvm.arch.tdp_mmu_pages -= 1
            kvm.mmu_lock.read_unlock(vcpu.name)
            return RET_PF_RETRY
    root.leafs.add(gfn)
    kvm.mmu_lock.read_unlock(vcpu.name)
    kvm.trace.emit("kvm_tdp_mmu_map", vcpu.name, gfn, f"root#{root.hpa}", status=RET_PF_FIXED,
                   source=SRC_TDP)
    return RET_PF_FIXED


# --- zapping ----------------------------------------------------------------------------------


def kvm_tdp_mmu_unmap_gfn_range(kvm: Kvm, gfns):
    """Zap the leaf SPTEs of `gfns` in every root (kvm_tdp_mmu_unmap_gfn_range via
    kvm_mmu_unmap_gfn_range, e.g. guest_memfd invalidation); the caller holds mmu_lock for
    write. On a mirror root each removed leaf goes through `remove_external_spte` (TDX:
    BLOCK, TRACK, REMOVE, WBINVD, clear); page tables stay ([RE-P2])."""
    ops = getattr(kvm.arch, "external_ops", None)
    for root in list(kvm.arch.tdp_mmu_roots):
        for gfn in sorted(set(gfns) & root.leafs):
            if root.role.is_mirror:
                if not kvm.mmu_lock.held_for_write():
                    _err(kvm, "inv11", f"removing mirror SPTEs of {root} without mmu_lock "
                         "held for write")
                if ops is not None and "zap-skips-external" not in ops.mutations(kvm):  # mutant
                    yield from ops.remove_external_spte(kvm, gfn)
            root.leafs.discard(gfn)


def tdp_mmu_zap_root(kvm: Kvm, root: KvmMmuPage, shared: bool):
    """Zap every SPTE of a root; removed page tables leave tdp_mmu_pages (handle_removed_pt →
    tdp_mmu_unlink_sp). WARN if the count is 0: the root must stay reachable by mmu_notifiers
    while it is zapped (inv10). Mirror SPTEs may only be removed under the write lock (inv11).
    A generator evaluating to the number of page-table pages freed. On a mirror root with
    external ops attached (a TD, `tdxedu.kvm.mirror`) each removed leaf goes through
    `remove_external_spte` and each removed page table through `free_external_spt`, the
    hooks TDX implements (S-EPT removal and reclaim, [TDXPREP] [RE-P2])."""
    kvm_lockdep_assert_mmu_lock_held(kvm, shared, "tdp_mmu_zap_root")
    _touch(kvm, root, "tdp_mmu_zap_root")
    if root.tdp_mmu_root_count <= 0:
        _err(kvm, "inv10", f"zapping {root} at refcount {root.tdp_mmu_root_count}")
    if root.role.is_mirror and (shared or not kvm.mmu_lock.held_for_write()):
        _err(kvm, "inv11", f"removing mirror SPTEs of {root} without mmu_lock held for write")
    ops = getattr(kvm.arch, "external_ops", None)
    if ops is not None and root.role.is_mirror:
        for gfn in sorted(root.leafs):
            yield from ops.remove_external_spte(kvm, gfn)
        if "uninit-skips-free-external-spt" not in ops.mutations(kvm):  # mutant
            for level, index in sorted(root.sps):  # lowest tables first (handle_removed_pt)
                yield from ops.free_external_spt(kvm, level, index)
    n = len(root.sps)
    a = kvm.arch
    if n:  # page tables go away: no vCPU may still run the guest on them (the kick waited)
        for v in kvm.vcpus:
            mmu = getattr(v.arch, "mmu", None)
            if mmu is not None and v.mode == IN_GUEST_MODE and root in (
                    mmu.root_hpa, mmu.mirror_root_hpa):
                _err(kvm, "zap-in-guest", f"{root} zapped ({n} page tables) while {v.name} "
                     "runs the guest on it")
    gone = [(root.hpa, k, a.tdp_mmu_sp_gen.get((root.hpa, k), 0)) for k in sorted(root.sps)]
    if gone and _pol(kvm).rcu_free_sp:  # handle_removed_pt -> call_rcu per page table
        a.tdp_mmu_sp_rcu += [(a.rcu_seq, sp) for sp in gone]
        a.rcu_seq += 1
    else:  # broken variant: the page tables are freed at once
        a.tdp_mmu_sp_freed.update(gone)
    root.sps.clear()
    root.leafs.clear()
    kvm.arch.tdp_mmu_pages -= n
    kvm.arch.tdp_mmu_stats["sp_freed"] += n
    kvm.arch.tdp_mmu_stats["roots_zapped"] += 1
    kvm.trace.emit("tdp_mmu_zap_root", f"root#{root.hpa}", f"freed_pt={n}",
                   "shared" if shared else "exclusive", source=SRC_TDP)
    return n


def tdp_mmu_schedule_zap_root(kvm: Kvm, root: KvmMmuPage) -> None:
    """Queue the root on kvm->arch.tdp_mmu_zap_wq (v5.18–v6.5, [OVH22])."""
    root.tdp_mmu_async_queued = True
    kvm.arch.tdp_mmu_zap_wq.append(root)
    kvm.trace.emit("queue_work", "tdp_mmu_zap_wq", f"root#{root.hpa}", source=SRC_TDP)


def tdp_mmu_zap_root_work(kvm: Kvm, root: KvmMmuPage, who: str):
    """The work item (tdp_mmu_zap_root_work): read lock, zap, put the gifted reference."""
    yield from kvm.mmu_lock.read_lock(who)
    yield from tdp_mmu_zap_root(kvm, root, True)
    root.tdp_mmu_async_queued = False
    yield from kvm_tdp_mmu_put_root(kvm, root, WQ_HOLDER, shared=True)
    kvm.mmu_lock.read_unlock(who)


def process_one_work(kvm: Kvm, who: str = "kworker"):
    """A kworker of tdp_mmu_zap_wq picks the oldest item and runs it (generator)."""
    root = kvm.arch.tdp_mmu_zap_wq.popleft()
    kvm.arch.tdp_mmu_worker_busy = root
    yield from tdp_mmu_zap_root_work(kvm, root, who)
    kvm.arch.tdp_mmu_worker_busy = None


def flush_workqueue(kvm: Kvm, who: str | None = None):
    """flush_workqueue / destroy_workqueue: wait until every queued item has run. With no worker
    thread in the model (`tdp_mmu_inline_worker`), run the items here."""
    if kvm.arch.tdp_mmu_zap_wq is None:
        return
    if kvm.arch.tdp_mmu_inline_worker:
        while kvm.arch.tdp_mmu_zap_wq:
            yield from process_one_work(kvm, _who(kvm, who))
        return
    a = kvm.arch
    if a.tdp_mmu_zap_wq or a.tdp_mmu_worker_busy is not None:
        yield WaitUntil(lambda: not a.tdp_mmu_zap_wq and a.tdp_mmu_worker_busy is None,
                        "flush_workqueue(tdp_mmu_zap_wq)")


def kvm_tdp_mmu_invalidate_roots(kvm: Kvm, types: int = KVM_VALID_ROOTS,
                                 who: str | None = None) -> list[KvmMmuPage]:
    """Mark matching valid roots invalid so vCPUs stop using them (returns them).

    Named `kvm_tdp_mmu_invalidate_all_roots` before v6.14 (no types: every valid root).
    Write lock asserted, except while the VM is destroyed (no users / no vCPUs) ([SC-preserve],
    [S-TDX]).
    v6.3: take an extra reference for the worker and queue the zap; v6.4–v6.5: gift the TDP
    MMU's reference to the worker; v6.6+: set `tdp_mmu_scheduled_root_to_zap` ([ASYNC-RM]).
    Already-invalid roots are skipped in every version."""
    pol = _pol(kvm)
    if not isinstance(types, int) or not 0 < types <= KVM_ALL_ROOTS:
        raise ValueError(f"types must be a mask of KVM_*_ROOTS bits, got {types!r}")
    if not pol.root_types:
        types = KVM_VALID_ROOTS
    if types & KVM_INVALID_ROOTS:
        _warn(kvm, "WARN_ON_ONCE", "invalidating invalid roots doesn't make sense")
        types &= ~KVM_INVALID_ROOTS
    destroying = kvm.users_count == 0 or not kvm.vcpus
    if not destroying and not kvm.mmu_lock.held_for_write():
        _err(kvm, "inv8", f"{pol.invalidate_fn} without mmu_lock held for write")
    out = []
    for root in list(kvm.arch.tdp_mmu_roots):
        if not tdp_mmu_root_match(root, types) or root.invalid:
            continue
        if pol.zap_via == "workqueue":
            if pol.invalidate_takes_ref:
                if not kvm_tdp_mmu_get_root(kvm, root, WQ_HOLDER):
                    _warn(kvm, "WARN_ON_ONCE", f"root#{root.hpa} at refcount 0")
                    continue
            else:  # the TDP MMU's reference becomes the work item's
                root.refs[TDP_MMU_HOLDER] -= 1
                if root.refs[TDP_MMU_HOLDER] == 0:
                    del root.refs[TDP_MMU_HOLDER]
                root.refs[WQ_HOLDER] += 1
            _set_invalid(root)
            tdp_mmu_schedule_zap_root(kvm, root)
        else:
            root.tdp_mmu_scheduled_root_to_zap = True
            _set_invalid(root)
        out.append(root)
    kvm.trace.emit(pol.invalidate_fn, root_types_str(types) if pol.root_types else "all",
                   f"invalidated={[r.hpa for r in out]}", source=SRC_TDP)
    return out


def tdp_mmu_next_root(kvm: Kvm, prev: KvmMmuPage | None, holder: str, *, shared: bool,
                      types: int):
    """The yield-safe iterator step (generator returning the next root or None): walk the list
    after `prev`, skip roots that do not match `types` and roots whose get fails (count 0),
    take a reference on the one returned, then put `prev` ([S-69]). mmu_lock must be held, in
    either mode (lockdep-asserted)."""
    kvm_lockdep_assert_mmu_lock_held(kvm, None, "tdp_mmu_next_root")
    roots = kvm.arch.tdp_mmu_roots
    start = roots.index(prev) + 1 if prev is not None and prev in roots else 0
    nxt = None
    for root in roots[start:]:
        if tdp_mmu_root_match(root, types) and kvm_tdp_mmu_get_root(kvm, root, holder):
            nxt = root
            break
    if prev is not None:
        yield from kvm_tdp_mmu_put_root(kvm, prev, holder, shared=shared)
    return nxt


def kvm_tdp_mmu_zap_invalidated_roots(kvm: Kvm, shared: bool = True, who: str | None = None):
    """Zap roots invalidated earlier, before fast zap returns (generator).

    v6.3–v6.5: flush the workqueue. v6.6+: walk all roots with the reference-taking iterator
    under mmu_lock (read from fast zap; write at uninit since v6.14); for each root with
    `tdp_mmu_scheduled_root_to_zap`: clear the flag, KVM_BUG_ON unless invalid, zap, and only
    then put the TDP MMU's reference (the root must stay reachable while zapped) — [ASYNC-RM]."""
    pol = _pol(kvm)
    who = _who(kvm, who)
    if pol.zap_via == "workqueue":
        yield from flush_workqueue(kvm, who)
        return
    yield from _lock(kvm, who, shared)
    holder = f"iter:{who}"
    root = None
    while True:
        root = yield from tdp_mmu_next_root(kvm, root, holder, shared=shared, types=KVM_ALL_ROOTS)
        if root is None:
            break
        if not root.tdp_mmu_scheduled_root_to_zap:
            continue
        root.tdp_mmu_scheduled_root_to_zap = False
        kvm.kvm_bug_on(not root.invalid, f"scheduled-to-zap {root} is valid")
        root.zapping = True  # (a mirror root's zap yields in its external hooks)
        yield from tdp_mmu_zap_root(kvm, root, shared)
        yield from kvm_tdp_mmu_put_root(kvm, root, TDP_MMU_HOLDER, shared=shared)
        root.zapping = False
    _unlock(kvm, who, shared)


def kvm_mmu_zap_all_fast(kvm: Kvm, who: str | None = None):
    """Fast zap (mmu.c, caller holds slots_lock): under the write lock invalidate the roots and,
    in the same critical section, request KVM_REQ_MMU_FREE_OBSOLETE_ROOTS on every vCPU (waiting
    for the IPI acknowledgement); drop the lock; zap the invalidated roots under the read lock.
    Every root it invalidated, or found invalid, must have no SPTE left when it returns (inv9).
    Since v6.14 it
    passes KVM_DIRECT_ROOTS: mirror roots cannot be fast-zapped ([TDXPREP], patch 17/17 of v3)."""
    pol = _pol(kvm)
    who = _who(kvm, who)
    lockdep_assert_held(kvm.slots_lock, "kvm_mmu_zap_all_fast", who)  # mmu.c
    yield from kvm.mmu_lock.write_lock(who)
    kvm.trace.emit("kvm_mmu_zap_all_fast", source=SRC_MMU)
    # the roots this fast zap is responsible for: those it invalidates and those already invalid
    # (v6.3: invalidate-all skips them, so their queued zap must be flushed too — [OVH22])
    snapshot = [r for r in kvm.arch.tdp_mmu_roots
                if tdp_mmu_root_match(r, pol.fast_zap_types | KVM_INVALID_ROOTS)]
    kvm_tdp_mmu_invalidate_roots(kvm, pol.fast_zap_types, who)
    if pol.invalidate_requests_free_obsolete:
        yield from kvm.kvm_make_all_cpus_request(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, who,
                                                 wait=pol.invalidate_request_waits)
    kvm.mmu_lock.write_unlock(who)
    yield from kvm_tdp_mmu_zap_invalidated_roots(kvm, True, who)
    kvm.arch.tdp_mmu_fast_zaps += 1
    for r in snapshot:
        if r.invalid and not r.freed and r.present():
            _err(kvm, "inv9", f"fast zap returned with SPTEs in invalidated {r}")
        if r.invalid and r.on_list:
            kvm.arch.tdp_mmu_stats["invalid_roots_alive_at_fast_zap_return"] += 1
    kvm.trace.emit("kvm_mmu_zap_all_fast", "done", source=SRC_MMU)


def kvm_set_memslot(kvm: Kvm, who: str | None = None):
    """A memslot delete/move: slots_lock, kvm_arch_flush_shadow_memslot → fast zap (with
    KVM_X86_QUIRK_SLOT_ZAP_ALL; for a TD the quirk acts as disabled and only the slot's leaf
    range is zapped, so roots stay valid — [YZ-zapquirk], [RE-P2])."""
    who = _who(kvm, who)
    yield from kvm.slots_lock.lock(who)
    kvm.trace.emit("kvm_set_memslot", "KVM_MR_DELETE", source="virt/kvm/kvm_main.c")
    if kvm.arch.has_mirrored_tdp:
        yield from kvm.mmu_lock.write_lock(who)
        # zap only the slot's leaves: the model's slot is every shared and private GFN
        for root in list(kvm.arch.tdp_mmu_roots):
            if root.leafs:
                _touch(kvm, root, "kvm_tdp_mmu_zap_leafs")
                root.leafs.clear()
        kvm.trace.emit("kvm_tdp_mmu_zap_leafs", "slot", source=SRC_TDP)
        kvm.mmu_lock.write_unlock(who)
        if _pol(kvm).fast_zap_types & KVM_MIRROR_ROOTS:  # broken variant: fast zap anyway
            yield from kvm_mmu_zap_all_fast(kvm, who)
    else:
        yield from kvm_mmu_zap_all_fast(kvm, who)
    kvm.slots_lock.unlock(who)


def kvm_mmu_zap_all(kvm: Kvm, who: str | None = None):
    """kvm_arch_flush_shadow_all → kvm_mmu_zap_all (mmu_notifier release / VM destruction):
    under the write lock zap direct and invalid roots (not mirror: [RE-mirror]) without invalidating
    them or putting the TDP MMU's reference; no TLB flush (no vCPU can run)."""
    who = _who(kvm, who)
    yield from kvm.mmu_lock.write_lock(who)
    holder = f"iter:{who}"
    root = None
    while True:
        root = yield from tdp_mmu_next_root(kvm, root, holder, shared=False,
                                            types=KVM_DIRECT_ROOTS | KVM_INVALID_ROOTS)
        if root is None:
            break
        yield from tdp_mmu_zap_root(kvm, root, False)
    kvm.mmu_lock.write_unlock(who)


def kvm_tdp_mmu_wrprot_slot(kvm: Kvm, who: str | None = None, *, resched: bool = True):
    """A reader over valid roots (e.g. enabling dirty logging, kvm_tdp_mmu_wrprot_slot): read
    lock, yield-safe iterator over valid roots; `resched` models tdp_mmu_iter_cond_resched
    dropping mmu_lock on each root. The iterator's final step puts the last root's reference
    under the read lock — in v6.3 possibly the root's last reference ([OVH22])."""
    who = _who(kvm, who)
    holder = f"iter:{who}"
    locked = _pol(kvm).iter_takes_mmu_lock  # False only for a broken variant
    if locked:
        yield from kvm.mmu_lock.read_lock(who)
    root = None
    while True:
        root = yield from tdp_mmu_next_root(kvm, root, holder, shared=True,
                                            types=KVM_DIRECT_ROOTS)
        if root is None:
            break
        kvm.trace.emit("wrprot_gfn_range", f"root#{root.hpa}", source=SRC_TDP)
        if resched:
            if locked:
                kvm.mmu_lock.read_unlock(who)
            yield Preempt("cond_resched: mmu_lock dropped")
            if locked:
                yield from kvm.mmu_lock.read_lock(who)
    if locked:
        kvm.mmu_lock.read_unlock(who)


def kvm_mmu_uninit_tdp_mmu(kvm: Kvm, who: str | None = None):
    """VM destruction (kvm_mmu_uninit_vm → kvm_mmu_uninit_tdp_mmu), after every vCPU reference
    is gone. v6.3: destroy the workqueue (flushing it). v6.4–v6.5: invalidate all roots (which
    gifts the TDP MMU's reference to the worker), then destroy the workqueue. v6.6+: invalidate
    (KVM_VALID_ROOTS — the only place the mirror root is invalidated) and zap the invalidated
    roots, with the write lock since v6.14. Then WARN unless tdp_mmu_pages is 0 and the root list
    empty, and rcu_barrier()."""
    pol = _pol(kvm)
    who = _who(kvm, who)
    kvm.arch.tdp_mmu_uninit = "running"
    if pol.rcu_barrier_first:  # broken variant: the barrier before the zap it should follow
        if rcu_callbacks_blocked(kvm):
            yield WaitUntil(lambda: not rcu_callbacks_blocked(kvm), "rcu_barrier()")
        rcu_barrier(kvm)
    if pol.uninit_invalidates:
        kvm_tdp_mmu_invalidate_roots(kvm, KVM_VALID_ROOTS, who)
        if pol.zap_via == "sync":
            yield from kvm_tdp_mmu_zap_invalidated_roots(kvm, pol.uninit_zap_shared, who)
    yield from flush_workqueue(kvm, who)
    if kvm.arch.tdp_mmu_pages:
        _warn(kvm, "WARN_ON", f"tdp_mmu_pages={kvm.arch.tdp_mmu_pages}")
    if kvm.arch.tdp_mmu_roots:
        _warn(kvm, "WARN_ON", f"tdp_mmu_roots not empty: {kvm.arch.tdp_mmu_roots}")
    if _pol(kvm).rcu_barrier_at_uninit and not pol.rcu_barrier_first:  # broken variants
        if rcu_callbacks_blocked(kvm):
            yield WaitUntil(lambda: not rcu_callbacks_blocked(kvm), "rcu_barrier()")
        rcu_barrier(kvm)
    kvm.arch.tdp_mmu_uninit = "done"


def kvm_destroy_vm(kvm: Kvm, who: str | None = None):
    """The root-relevant part of kvm_destroy_vm: last user gone; mmu_notifier release
    (kvm_mmu_zap_all); kvm_arch_destroy_vm unloads every vCPU MMU, destroys the vCPUs
    (kvm_mmu_destroy drops mirror references) and uninitialises the TDP MMU ([RE-P2])."""
    who = _who(kvm, who)
    kvm.users_count = 0
    kvm.trace.emit("kvm_destroy_vm", source="virt/kvm/kvm_main.c")
    yield from kvm_mmu_zap_all(kvm, who)
    for v in kvm.vcpus:
        yield from kvm_mmu_unload(v)
    for v in kvm.vcpus:
        yield from kvm_mmu_destroy(v)
    yield from kvm_mmu_uninit_tdp_mmu(kvm, who)
    kvm.destroyed = True
