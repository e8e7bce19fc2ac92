"""The invariants of TDP MMU root management as one function over the model state, used by
`World.invariants()` after every step. They restate what the kernel asserts or relies on in
`tdp_mmu.c` ([S-69], [S-TDX]) and the rules of [SC-preserve], [ASYNC-RM] and [TDXPREP]; the
reference model (who holds each reference) is ours, as the kernel keeps only the count.

Each violation string starts with its tag: "inv1" … "inv13" (`INVARIANTS` below), "inv-refs"
(the count equals the number of named holders, and each vCPU slot holds exactly its own
reference). Event-like violations (a get from zero, a zap at refcount 0, …) are recorded by the
model at the step they happen (`kvm.arch.tdp_mmu_errors`) and reported here too.
"""

from __future__ import annotations

from collections import Counter

from .kvm import IN_GUEST_MODE, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, Kvm
from .mmu_role import MAX_DIRECT_ROLES
from .tdp_mmu import TDP_MMU_HOLDER, WQ_HOLDER

INVARIANTS = {
    "inv1": "refcount never negative",
    "inv2": "no free of a valid root (a valid root keeps the TDP MMU's reference, v6.4+)",
    "inv3": "invalid is monotonic",
    "inv4": "the TDP MMU reference is held iff the root is valid or scheduled to be zapped",
    "inv5": "no reference is acquired on a root at refcount 0",
    "inv6": "no use after free: a freed or unlinked root is in no vCPU slot and never touched",
    "inv7": "at most one valid root per role; <= 6 direct roles, <= 1 mirror root",
    "inv8": "invalidation under the write lock together with KVM_REQ_MMU_FREE_OBSOLETE_ROOTS; "
            "no vCPU runs the guest on an invalid root",
    "inv9": "when fast zap returns, the roots it invalidated have no SPTEs",
    "inv10": "a root is zapped only while its refcount > 0",
    "inv11": "the mirror root is invalidated only at VM destruction; mirror SPTEs removed "
             "only under the write lock",
    "inv12": "tdp_mmu_pages counts the non-root page tables and is never negative",
    "inv13": "after kvm_mmu_uninit_tdp_mmu: no root, tdp_mmu_pages == 0, no pending RCU free",
    "inv-refs": "the refcount equals the references of named holders (the model's account)",
    "zap-in-guest": "no root's page tables are zapped while a vCPU runs the guest on it (the "
                    "kick waits for every vCPU in guest mode to exit)",
}


def tdp_mmu_invariants(kvm: Kvm) -> list[str]:
    a = kvm.arch
    pol = a.tdp_mmu_policy
    out = list(a.tdp_mmu_errors)
    live = list(a.tdp_mmu_live.values())
    slot_refs: dict[int, Counter] = {}
    for v in kvm.vcpus:
        for slot, r in v.arch.mmu.slots():
            if r is None:
                continue
            slot_refs.setdefault(r.hpa, Counter())[f"{v.name}.{slot}"] += 1
            if r.freed or not r.on_list:
                out.append(f"inv6: {v.name}.{slot} points at {'freed' if r.freed else 'unlinked'}"
                           f" {r}")
            if slot == "mirror" and r.invalid and a.tdp_mmu_uninit == "no":
                out.append(f"inv11: {v.name} holds invalid mirror {r} before VM destruction")
        if v.mode == IN_GUEST_MODE:
            for r in (v.arch.mmu.root_hpa, v.arch.mmu.mirror_root_hpa):
                if r is not None and r.invalid and \
                        KVM_REQ_MMU_FREE_OBSOLETE_ROOTS not in v.requests:
                    out.append(f"inv8: {v.name} runs the guest on invalid {r} with no "
                               "KVM_REQ_MMU_FREE_OBSOLETE_ROOTS pending")
    valid_roles: Counter = Counter()
    pages = 0
    for r in live:
        pages += len(r.sps)
        c = r.tdp_mmu_root_count
        if c < 0:
            out.append(f"inv1: {r} has a negative refcount")
        if sum(r.refs.values()) != c and not r.freed:
            out.append(f"inv-refs: {r} count {c} != holders {dict(r.refs)}")
        for h, n in r.refs.items():
            if "." in h and not h.startswith("iter:") and slot_refs.get(r.hpa, {}).get(h) != n:
                out.append(f"inv-refs: {r} lists holder {h} but that slot does not point at it")
        for h, n in slot_refs.get(r.hpa, {}).items():
            if r.refs.get(h, 0) != n:
                out.append(f"inv-refs: {h} points at {r} without holding a reference")
        if not r.invalid:
            if c == 0 and not (pol.zero_on_valid == "resurrect" and r.dying):
                out.append(f"inv2: valid {r} has refcount 0")
            if r.rcu_pending or r.freed or not r.on_list:
                out.append(f"inv2: valid {r} was unlinked/freed")
            valid_roles[r.role.word] += 1
        if r.ever_invalid and not r.invalid:
            out.append(f"inv3: {r} became valid again")
        # inv4: who holds the TDP MMU's (or the work item's) reference
        tdp_ref = r.refs.get(TDP_MMU_HOLDER, 0)
        wq_ref = r.refs.get(WQ_HOLDER, 0)
        if pol.initial_refcount == 2 and not r.freed:
            want = (not r.invalid) or r.tdp_mmu_scheduled_root_to_zap
            if bool(tdp_ref) != want and not r.zapping:
                out.append(f"inv4: {r} TDP MMU reference held={bool(tdp_ref)} but "
                           f"valid={not r.invalid} scheduled={r.tdp_mmu_scheduled_root_to_zap}")
        if r.tdp_mmu_scheduled_root_to_zap and not r.invalid:
            out.append(f"inv4: {r} scheduled to zap but valid")
        if a.tdp_mmu_zap_wq is not None and not r.freed and bool(wq_ref) != \
                r.tdp_mmu_async_queued:
            out.append(f"inv4: {r} work-item reference held={bool(wq_ref)} but "
                       f"queued={r.tdp_mmu_async_queued}")
        if r.role.is_mirror and r.invalid and a.tdp_mmu_uninit == "no":
            out.append(f"inv11: mirror {r} invalidated before VM destruction")
    for word, n in valid_roles.items():
        if n > 1:
            out.append(f"inv7: {n} valid roots with role {word}")
    n_direct = sum(n for w, n in valid_roles.items() if not w[4])
    n_mirror = sum(n for w, n in valid_roles.items() if w[4])
    if n_direct > MAX_DIRECT_ROLES:
        out.append(f"inv7: {n_direct} valid direct roots (> {MAX_DIRECT_ROLES})")
    if n_mirror > 1:
        out.append(f"inv7: {n_mirror} valid mirror roots")
    if a.tdp_mmu_pages < 0:
        out.append(f"inv12: tdp_mmu_pages = {a.tdp_mmu_pages} < 0")
    if a.tdp_mmu_pages != pages:
        out.append(f"inv12: tdp_mmu_pages = {a.tdp_mmu_pages} but roots hold {pages}")
    if a.tdp_mmu_uninit == "done":
        if a.tdp_mmu_roots:
            out.append(f"inv13: roots left after uninit: {a.tdp_mmu_roots}")
        if a.tdp_mmu_pages:
            out.append(f"inv13: tdp_mmu_pages = {a.tdp_mmu_pages} after uninit")
        if a.tdp_mmu_rcu_callbacks or a.tdp_mmu_sp_rcu:
            out.append("inv13: RCU frees pending after kvm_mmu_uninit_tdp_mmu (rcu_barrier)")
        leaked = [r for r in live if not r.freed]
        if leaked:
            out.append(f"inv13: roots never freed: {leaked}")
    return out


def tdp_mmu_fingerprint(kvm: Kvm) -> tuple:
    """The root-relevant state of a VM, for the explorer's pruning."""
    a = kvm.arch
    roots = tuple(r.state() for r in sorted(a.tdp_mmu_live.values(), key=lambda r: r.hpa))
    vcpus = tuple(
        (v.name, v.mode, tuple(sorted(v.requests)), v.arch.smm,
         tuple(None if r is None else r.hpa for _, r in v.arch.mmu.slots()))
        for v in kvm.vcpus)
    wq = None if a.tdp_mmu_zap_wq is None else tuple(r.hpa for r in a.tdp_mmu_zap_wq)
    busy = None if a.tdp_mmu_worker_busy is None else a.tdp_mmu_worker_busy.hpa
    return (roots, tuple(r.hpa for r in a.tdp_mmu_roots), vcpus, wq, busy,
            tuple(r.hpa for r in a.tdp_mmu_rcu_callbacks), a.tdp_mmu_pages,
            tuple(sorted(a.tdp_mmu_stats.items())), len(a.tdp_mmu_errors),
            len(a.tdp_mmu_warnings), a.tdp_mmu_uninit,
            a.tdp_mmu_fast_zaps, kvm.mmu_lock.writer, tuple(sorted(kvm.mmu_lock.readers)),
            kvm.slots_lock.owner, kvm.users_count, kvm.vm_bugged,
            tuple(sorted(a.rcu_readers.items())), a.rcu_seq, tuple(a.tdp_mmu_sp_rcu),
            len(a.tdp_mmu_sp_freed), tuple(sorted(a.tdp_mmu_sp_gen.items())))
