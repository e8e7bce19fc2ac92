"""TDP MMU root roles, root types and the kernel-version policies of root management.

Role (`union kvm_mmu_page_role`, arch/x86/include/asm/kvm_host.h): the fields that matter for a
TDP root are the paging level (4 or 5), `smm` (address space 1), `guest_mode` (L2 running on
L1's TDP tables), `invalid` and, in the TDX era, `is_mirror`. A vCPU's desired role never has
`invalid` set, and roots are matched on the whole role word, so an invalid root can never be
reused (`kvm_tdp_mmu_get_vcpu_root_hpa`, `kvm_tdp_mmu_alloc_root` in arch/x86/kvm/mmu/tdp_mmu.c,
[S-69]).

Root types (`enum kvm_tdp_mmu_root_types`, arch/x86/kvm/mmu/tdp_mmu.h, v6.14+): bit masks
used by `kvm_tdp_mmu_invalidate_roots(kvm, types)` and the iterators ([H-TDX], [TDXPREP]).

Policies (versions are data, not copied code): one code path in `tdp_mmu.py` reads a
`RootPolicy`; the names are kernel versions (`"v6.3"`, `"v6.4"`, `"v6.6"`, `"v6.16"`) and, for
tests and mutation lessons only, deliberately broken variants (`"broken-..."`), each of which
violates one named invariant of `tdp_mmu_invariants.INVARIANTS`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# --- root types (tdp_mmu.h, v6.14+; [H-TDX]) ------------------------------------------
KVM_INVALID_ROOTS = 1 << 0
KVM_DIRECT_ROOTS = 1 << 1
KVM_MIRROR_ROOTS = 1 << 2
KVM_VALID_ROOTS = KVM_DIRECT_ROOTS | KVM_MIRROR_ROOTS
KVM_ALL_ROOTS = KVM_VALID_ROOTS | KVM_INVALID_ROOTS

ROOT_TYPE_NAMES = {
    KVM_INVALID_ROOTS: "KVM_INVALID_ROOTS",
    KVM_DIRECT_ROOTS: "KVM_DIRECT_ROOTS",
    KVM_MIRROR_ROOTS: "KVM_MIRROR_ROOTS",
    KVM_VALID_ROOTS: "KVM_VALID_ROOTS",
    KVM_ALL_ROOTS: "KVM_ALL_ROOTS",
}

#: Fixed upper bound on distinct non-mirror TDP roles (the commit message of [SC-preserve]):
#: {4-level, 5-level} x {!SMM, SMM} outside guest mode + {4-level, 5-level} x !SMM in guest mode.
MAX_DIRECT_ROLES = 6


def root_types_str(types: int) -> str:
    if types in ROOT_TYPE_NAMES:
        return ROOT_TYPE_NAMES[types]
    return "|".join(n for b, n in ROOT_TYPE_NAMES.items() if b in (1, 2, 4) and types & b)


@dataclass(frozen=True, slots=True)
class KvmMmuPageRole:
    """The parts of `union kvm_mmu_page_role` a TDP MMU root is keyed on."""

    level: int = 4
    smm: bool = False
    guest_mode: bool = False
    invalid: bool = False
    is_mirror: bool = False

    def __post_init__(self):
        if self.level not in (4, 5):
            raise ValueError(f"TDP root level must be 4 or 5, got {self.level!r}")
        for f in ("smm", "guest_mode", "invalid", "is_mirror"):
            if not isinstance(getattr(self, f), bool):
                raise TypeError(f"role.{f} must be a bool, got {getattr(self, f)!r}")
        if self.is_mirror and (self.smm or self.guest_mode):
            # A TD has no SMM and no nested guest; the mirror role is the plain private one.
            raise ValueError("a mirror (TDX private) root has neither smm nor guest_mode")
        if self.smm and self.guest_mode:
            # kvm_mmu_calc_root_role: guest_mode roots are !SMM ([SC-preserve]: {4,5} x !SMM for
            # L2).
            raise ValueError("no TDP root has both smm and guest_mode ([SC-preserve])")

    @property
    def word(self) -> tuple:
        """What `role.word` compares: every field, `invalid` included."""
        return (self.level, self.smm, self.guest_mode, self.invalid, self.is_mirror)

    @property
    def as_id(self) -> int:
        """kvm_mmu_role_as_id(): SMM roots live in address space 1."""
        return 1 if self.smm else 0

    def with_invalid(self) -> KvmMmuPageRole:
        return replace(self, invalid=True)

    def __str__(self) -> str:
        bits = [f"{self.level}-level"]
        if self.smm:
            bits.append("smm")
        if self.guest_mode:
            bits.append("guest_mode")
        if self.is_mirror:
            bits.append("mirror")
        if self.invalid:
            bits.append("invalid")
        return ",".join(bits)


# --- policies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RootPolicy:
    """How one kernel version manages TDP MMU roots. Every field cites where it comes from.

    initial_refcount: 1 up to v6.3 (the vCPU's reference only, [OVH22]), 2 from v6.4 (one for
        the vCPU, one held by the TDP MMU until explicit invalidation, [SC-preserve]).
    zero_on_valid: what `kvm_tdp_mmu_put_root` does when the count reaches 0 on a *valid* root:
        "resurrect" (v6.3: mark invalid, set the count back to 1, schedule the zap — [OVH22]),
        "bug" (v6.4+: KVM_BUG_ON — [SC-preserve]), "free" (broken: no invalid check at all).
    zap_via: "workqueue" (`tdp_mmu_zap_wq`, v5.18–v6.5) or "sync"
        (`tdp_mmu_scheduled_root_to_zap` + synchronous zap, v6.6+ — [ASYNC-RM]).
    invalidate_takes_ref: v6.3 `kvm_tdp_mmu_invalidate_all_roots` gets an extra reference for
        the worker; v6.4 gifts the TDP MMU's own reference instead ([OVH22], [SC-preserve]).
    root_types: v6.14+ root-type masks and TDX mirror roots ([TDXPREP]).
    rdlock_roots: v6.9+ allocates and frees vCPU roots under mmu_lock held for read ([RDLOCK]);
        before, `mmu_alloc_direct_roots` / `kvm_mmu_free_roots` took it for write.
    uninit_zap_shared: whether `kvm_mmu_uninit_tdp_mmu` zaps with the read lock (v6.6–v6.13) or
        the write lock (v6.14+, "Zap invalid roots with mmu_lock holding for write at uninit").
    """

    name: str
    initial_refcount: int
    zero_on_valid: str
    zap_via: str
    invalidate_takes_ref: bool
    root_types: bool
    rdlock_roots: bool
    uninit_invalidates: bool
    uninit_zap_shared: bool = True
    # knobs that only broken variants change
    resurrect_schedules_zap: bool = True
    get_if_not_zero: bool = True
    fast_zap_types: int = KVM_DIRECT_ROOTS
    invalidate_requests_free_obsolete: bool = True
    invalidate_request_waits: bool = True  # KVM_REQUEST_WAIT: the kick waits for the exit
    iter_takes_mmu_lock: bool = True  # yield-safe root readers hold mmu_lock ([S-69])
    free_roots_takes_lock: bool = True  # kvm_mmu_free_roots takes mmu_lock ([M-610])
    rcu_free_root: bool = True  # a root with no references is freed after a grace period
    rcu_free_sp: bool = True  # so are the page-table pages a zap unlinks ([S-TDX])
    rcu_barrier_at_uninit: bool = True  # kvm_mmu_uninit_tdp_mmu ends with rcu_barrier()
    rcu_barrier_first: bool = False  # broken: the barrier runs before the roots are zapped
    lockless_walk_rcu: bool = True  # lockless walkers run inside rcu_read_lock()
    lockless_walk_resched: bool = False  # broken: a lockless walk drops RCU to reschedule
    broken: str | None = None  # the invariant a broken variant is expected to violate

    @property
    def invalidate_fn(self) -> str:
        return "kvm_tdp_mmu_invalidate_roots" if self.root_types else \
            "kvm_tdp_mmu_invalidate_all_roots"

    @property
    def alloc_fn(self) -> str:
        return "kvm_tdp_mmu_alloc_root" if self.rdlock_roots else "kvm_tdp_mmu_get_vcpu_root_hpa"


_V63 = RootPolicy("v6.3", initial_refcount=1, zero_on_valid="resurrect", zap_via="workqueue",
                  invalidate_takes_ref=True, root_types=False, rdlock_roots=False,
                  uninit_invalidates=False)
_V64 = RootPolicy("v6.4", initial_refcount=2, zero_on_valid="bug", zap_via="workqueue",
                  invalidate_takes_ref=False, root_types=False, rdlock_roots=False,
                  uninit_invalidates=True)
_V66 = RootPolicy("v6.6", initial_refcount=2, zero_on_valid="bug", zap_via="sync",
                  invalidate_takes_ref=False, root_types=False, rdlock_roots=False,
                  uninit_invalidates=True, uninit_zap_shared=True)
_V616 = RootPolicy("v6.16", initial_refcount=2, zero_on_valid="bug", zap_via="sync",
                   invalidate_takes_ref=False, root_types=True, rdlock_roots=True,
                   uninit_invalidates=True, uninit_zap_shared=False)

POLICIES: dict[str, RootPolicy] = {p.name: p for p in (_V63, _V64, _V66, _V616)}

#: Broken variants (tests / mutation exercises only). Each names the invariant it breaks.
BROKEN_POLICIES: dict[str, RootPolicy] = {
    p.name: p
    for p in (
        # put without the invalid check, on a count that starts at 1 (v6.3 counting):
        # the vCPU's last put frees a root that is still valid.
        replace(_V64, name="broken-free-valid-root", initial_refcount=1, zero_on_valid="free",
                uninit_invalidates=False, broken="inv2"),
        # get that increments from zero: a reader revives a root in the middle of its last put.
        replace(_V63, name="broken-get-unconditional", get_if_not_zero=False, broken="inv5"),
        # v6.3 resurrection without scheduling the zap: the resurrected reference belongs to a
        # work item that was never queued (inv4, caught at once); unchecked, fast zap skips the
        # already-invalid root and returns with its SPTEs present (inv9, Paolo's "not just nice
        # to have" comment) and the root is never freed (inv13).
        replace(_V63, name="broken-resurrect-no-zap", resurrect_schedules_zap=False,
                broken="inv4"),
        # fast zap that invalidates the TDX mirror root too (KVM_VALID_ROOTS, not DIRECT).
        replace(_V616, name="broken-fast-zap-mirror", fast_zap_types=KVM_VALID_ROOTS,
                broken="inv11"),
        # invalidation without KVM_REQ_MMU_FREE_OBSOLETE_ROOTS in the same critical section.
        replace(_V66, name="broken-invalidate-no-request",
                invalidate_requests_free_obsolete=False, broken="inv8"),
    )
}


def tdp_mmu_policy(policy: str | RootPolicy) -> RootPolicy:
    """Look a policy up by name; a `RootPolicy` passes through."""
    if isinstance(policy, RootPolicy):
        return policy
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a str or RootPolicy, got {type(policy).__name__}")
    if policy in POLICIES:
        return POLICIES[policy]
    if policy in BROKEN_POLICIES:
        return BROKEN_POLICIES[policy]
    raise ValueError(f"unknown TDP MMU root policy {policy!r}; allowed: "
                     f"{', '.join(POLICIES)} (broken variants for tests: "
                     f"{', '.join(BROKEN_POLICIES)})")
