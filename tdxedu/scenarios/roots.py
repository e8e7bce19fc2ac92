"""TDP MMU root scenarios: the SMM-reset storm, a memslot update while vCPUs
run, VM destruction, and v6.3's last put under the read lock racing invalidate-all-roots.

Every scenario is a builder `f(policy, sizes...) -> World` plus small registered instances per
policy (`roots-<scenario>-<policy>`), run by `tdxedu explore` and the tests. `smm_storm()` is
the fast, direct-call measurement of the 2023 report (Sean's "15 vs 100k" root allocations,
[SC-Apr23]).
"""

from __future__ import annotations

from collections import Counter

from ..kvm.kvm import Kvm
from ..kvm.mmu_role import BROKEN_POLICIES, POLICIES, tdp_mmu_policy
from ..kvm.tdp_mmu import (
    kvm_destroy_vm,
    kvm_mmu_create,
    kvm_mmu_init_tdp_mmu,
    kvm_set_memslot,
    kvm_smm_changed,
    kvm_tdp_mmu_map,
    kvm_tdp_mmu_wrprot_slot,
    process_one_work,
    rcu_callbacks_pending,
    rcu_callbacks_ready,
    rcu_grace_period,
    tdp_mmu_walk_lockless,
    vcpu_enter_guest,
)
from ..kvm.tdp_mmu_invariants import tdp_mmu_fingerprint, tdp_mmu_invariants
from ..sim.engine import World
from ..trace import PREEMPT, Trace, WaitUntil, run_to_completion
from .registry import scenario

#: a shared GFN for a TD (the shared bit set) and a private one; plain VMs use both as-is
SHARED_GFN = (1 << 30) | 0x10
PRIVATE_GFN = 0x20


def _check_sizes(**sizes):
    for k, (v, lo, hi) in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{k} must be an int, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"{k} must be in [{lo}, {hi}] for an explorable scenario, got {v}")


class RootsWorld(World):
    """A VM with the TDP MMU under one policy, vCPU actors, and (for the workqueue policies) a
    kworker actor; a grace-period actor runs queued call_rcu frees. `jobs` adds actors."""

    def __init__(self, policy: str, n_vcpus: int, *, td: bool = False):
        self.policy = tdp_mmu_policy(policy)
        self.trace = Trace()
        self.kvm = Kvm(nr_cpus=max(n_vcpus, 1), trace=self.trace)
        kvm_mmu_init_tdp_mmu(self.kvm, self.policy, has_mirrored_tdp=td, inline_worker=False)
        for _ in range(n_vcpus):
            kvm_mmu_create(self.kvm.create_vcpu())
        self.jobs: dict[str, object] = {}
        self._done: set[str] = set()

    # daemons end when every job has ended and nothing is queued for them
    def _jobs_done(self) -> bool:
        return self._done >= set(self.jobs)

    def _job(self, name, gen):
        yield from gen
        self._done.add(name)

    def _kworker(self):
        a = self.kvm.arch
        while True:
            if not a.tdp_mmu_zap_wq:
                yield WaitUntil(lambda: bool(a.tdp_mmu_zap_wq) or self._jobs_done(),
                                "work on tdp_mmu_zap_wq")
            if not a.tdp_mmu_zap_wq:
                return
            yield from process_one_work(self.kvm, "kworker")

    def _rcu(self):
        """Grace periods: one step runs every callback no reader holds back (a reader that
        began before the callback was queued)."""
        kvm = self.kvm
        a = kvm.arch

        def idle() -> bool:
            return (self._jobs_done() and not rcu_callbacks_pending(kvm) and not a.tdp_mmu_zap_wq
                    and a.tdp_mmu_worker_busy is None)

        while True:
            if not rcu_callbacks_ready(kvm):
                yield WaitUntil(lambda: rcu_callbacks_ready(kvm) or idle(), "call_rcu callbacks")
            if not rcu_callbacks_ready(kvm):
                if idle():
                    return
                continue
            rcu_grace_period(kvm)  # one step: the grace period ends

    def actors(self):
        acts = {n: self._job(n, g) for n, g in self.jobs.items()}
        if self.kvm.arch.tdp_mmu_zap_wq is not None:
            acts["kworker"] = self._kworker()
        acts["rcu"] = self._rcu()
        return acts

    def fingerprint(self):
        return (tdp_mmu_fingerprint(self.kvm), tuple(sorted(self._done)))

    def invariants(self):
        return tdp_mmu_invariants(self.kvm) + list(self.kvm.debug_errors)

    def conditions(self):
        a = self.kvm.arch
        st = a.tdp_mmu_stats
        return {
            "kvm_bug": self.kvm.vm_bugged,
            "root_freed": st["roots_freed"] > 0,
            # a role was allocated again after its root died (the 2023 storm)
            "root_reallocated": st["roots_allocated"] > len(a.tdp_mmu_roles_seen),
            # resurrected by a last put under the read lock (v6.3 only, [OVH22])
            "resurrected_under_read_lock": st["roots_resurrected_shared"] > 0,
            # [ASYNC-RM]: "invalid roots can outlive a memslot update" (zapped, still referenced)
            "invalid_root_outlived_fast_zap": st["invalid_roots_alive_at_fast_zap_return"] > 0,
            "fast_zap_left_sptes": any(e.startswith("inv9") for e in a.tdp_mmu_errors),
            "all_roots_freed": not a.tdp_mmu_live and not a.tdp_mmu_roots,
            "tdp_mmu_pages_zero": a.tdp_mmu_pages == 0,
            "tdp_mmu_warn": bool(a.tdp_mmu_warnings),
        }


def vcpu_script(vcpu, ops):
    """A vCPU thread: "run" = enter the guest, take an EPT violation and handle it; "smi" /
    "rsm" = kvm_smm_changed; a preemption point between operations."""
    kvm = vcpu.kvm
    for i, op in enumerate(ops):
        if i:
            yield PREEMPT
        if op == "run":
            entered = yield from vcpu_enter_guest(vcpu)
            if entered:
                for gfn in (SHARED_GFN, PRIVATE_GFN) if kvm.arch.has_mirrored_tdp else (
                        PRIVATE_GFN,):
                    yield from kvm_tdp_mmu_map(vcpu, gfn)
        elif op == "smi":
            yield from kvm_smm_changed(vcpu, True)
        elif op == "rsm":
            yield from kvm_smm_changed(vcpu, False)
        else:
            raise ValueError(f"unknown vCPU op {op!r}")


def smm_storm_world(policy: str = "v6.4", n_vcpus: int = 1, n_cycles: int = 1, *,
                    td: bool = False) -> RootsWorld:
    """Each vCPU runs, then does `n_cycles` SMI/RSM round trips, running after each (the 2023
    report: KVM resets the MMU context on every SMI and RSM, [SC-Apr23-diag])."""
    _check_sizes(n_vcpus=(n_vcpus, 1, 3), n_cycles=(n_cycles, 1, 3))
    w = RootsWorld(policy, n_vcpus, td=td)
    ops = ["run"] + ["smi", "run", "rsm", "run"] * n_cycles
    for v in w.kvm.vcpus:
        w.jobs[v.name] = vcpu_script(v, ops)
    return w


def memslot_update_world(policy: str = "v6.6", n_vcpus: int = 2, n_runs: int = 2, *,
                         td: bool = False) -> RootsWorld:
    """vcpu0 runs `n_runs` times (the later runs service KVM_REQ_MMU_FREE_OBSOLETE_ROOTS), the
    other vCPUs once, while a memslot is deleted (fast zap, [M-610])."""
    _check_sizes(n_vcpus=(n_vcpus, 1, 3), n_runs=(n_runs, 1, 3))
    w = RootsWorld(policy, n_vcpus, td=td)
    for v in w.kvm.vcpus:
        w.jobs[v.name] = vcpu_script(v, ["run"] * (n_runs if v.vcpu_id == 0 else 1))
    w.jobs["memslot"] = kvm_set_memslot(w.kvm, "memslot")
    return w


def vm_destroy_world(policy: str = "v6.16", n_vcpus: int = 2, smm_vcpus: int = 1, *,
                     td: bool = False) -> RootsWorld:
    """vCPUs run and exit (the first `smm_vcpus` with an SMI/RSM round trip, so v6.3 has dead
    roots queued on its workqueue); then the VM is destroyed (kvm_destroy_vm, [RE-P2]) while the
    kworker and RCU may still be busy. A TD has no SMM, so `td` forces `smm_vcpus` = 0."""
    _check_sizes(n_vcpus=(n_vcpus, 1, 3), smm_vcpus=(smm_vcpus, 0, n_vcpus))
    w = RootsWorld(policy, n_vcpus, td=td)
    for v in w.kvm.vcpus:
        smm = v.vcpu_id < smm_vcpus and not td
        w.jobs[v.name] = vcpu_script(v, ["run", "smi", "run", "rsm"] if smm else ["run"])
    vcpu_names = [v.name for v in w.kvm.vcpus]

    def destroy():
        yield WaitUntil(lambda: w._done >= set(vcpu_names), "every vCPU fd closed")
        yield from kvm_destroy_vm(w.kvm, "destroy")

    w.jobs["destroy"] = destroy()
    return w


def last_put_race_world(policy: str = "v6.3", n_readers: int = 1) -> RootsWorld:
    """v6.3's last put under the read lock vs invalidate-all-roots ([OVH22]): a reader
    (kvm_tdp_mmu_wrprot_slot) holds a reference across a cond_resched while vcpu0 enters SMM
    (dropping its reference); the reader's final iterator step may then put the root's last
    reference under the read lock, while a memslot update's fast zap wants the write lock."""
    _check_sizes(n_readers=(n_readers, 1, 2))
    w = RootsWorld(policy, 1)
    v = w.kvm.vcpus[0]
    run_to_completion(vcpu_script(v, ["run"]))  # vcpu0 has a root with a mapped GFN

    for i in range(n_readers):
        w.jobs[f"reader{i}"] = kvm_tdp_mmu_wrprot_slot(w.kvm, f"reader{i}")
    w.jobs[v.name] = vcpu_script(v, ["smi"])
    w.jobs["memslot"] = kvm_set_memslot(w.kvm, "memslot")
    return w


def lockless_walk_world(policy: str = "v6.16") -> RootsWorld:
    """A lockless walker (lockless aging / the fast page fault: RCU only, no mmu_lock, no root
    reference, [S-TDX]) walks the roots and their page tables while vcpu0 runs twice and a
    memslot is deleted: the fast zap unlinks the root's page tables, vcpu0's next entry drops
    the invalid root and its last put frees it. RCU must keep everything the walker can
    still read alive until its read-side section ends."""
    w = RootsWorld(policy, 1)
    v = w.kvm.vcpus[0]
    run_to_completion(vcpu_script(v, ["run"]))  # vcpu0 has a root with page tables
    w.jobs["walker"] = tdp_mmu_walk_lockless(w.kvm, "walker")
    w.jobs[v.name] = vcpu_script(v, ["run"])
    w.jobs["memslot"] = kvm_set_memslot(w.kvm, "memslot")
    return w


BUILDERS = {
    "smm-storm": smm_storm_world,
    "memslot-update": memslot_update_world,
    "vm-destroy": vm_destroy_world,
    "last-put-race": last_put_race_world,
    "lockless-walk": lockless_walk_world,
}


def _register():
    for pol in POLICIES:
        scenario(f"roots-smm-storm-{pol}",
                 f"{pol}: 1 vCPU, 1 SMI/RSM round trip; does the root survive its last vCPU "
                 "reference?", 300)(lambda p=pol: smm_storm_world(p, 1, 1))
        scenario(f"roots-memslot-update-{pol}",
                 f"{pol}: 2 vCPUs run while a memslot is deleted (fast zap)", 300)(
            lambda p=pol: memslot_update_world(p, 2, 2))
        scenario(f"roots-vm-destroy-{pol}",
                 f"{pol}: 2 vCPUs (one with an SMI/RSM round trip), then VM destruction", 300)(
            lambda p=pol: vm_destroy_world(p, 2, 1))
        scenario(f"roots-last-put-race-{pol}",
                 f"{pol}: last put under the read lock vs invalidate-all-roots", 300)(
            lambda p=pol: last_put_race_world(p, 1))
    for pol in ("v6.16",):
        scenario(f"roots-memslot-update-td-{pol}",
                 f"{pol}: a TD (mirror root) with 2 vCPUs while a memslot is deleted", 300)(
            lambda p=pol: memslot_update_world(p, 2, td=True))
        scenario(f"roots-vm-destroy-td-{pol}",
                 f"{pol}: TD destruction; the mirror root is freed only in uninit", 300)(
            lambda p=pol: vm_destroy_world(p, 2, 0, td=True))


_register()


# --- the storm at scale -----------------------------------------------------------------------


def smm_storm(policy: str, n_cycles: int, n_vcpus: int = 1, *, td: bool = False,
              check_every: int = 0) -> dict:
    """N SMI/RSM round trips on each of `n_vcpus` vCPUs, driven by direct calls (no explorer):
    the worker and RCU keep up (queued zaps run and a grace period ends after each operation).

    Returns root allocations (`kvm_mmu_get_page` "new" events for roots, what Sean counted in
    [SC-Apr23]), reuses, frees, page-table pages allocated (each rebuild re-faults), the number of
    distinct roles and the invariant violations found when `check_every` > 0 (checked every
    that many cycles and at the end)."""
    _check_sizes(n_vcpus=(n_vcpus, 1, 4))
    if td:
        raise ValueError("a TD has no SMM: the SMM storm applies to normal VMs only")
    if not isinstance(n_cycles, int) or isinstance(n_cycles, bool) or n_cycles < 0:
        raise ValueError(f"n_cycles must be a non-negative int, got {n_cycles!r}")
    if not isinstance(check_every, int) or check_every < 0:
        raise ValueError(f"check_every must be a non-negative int, got {check_every!r}")
    pol = tdp_mmu_policy(policy)
    kvm = Kvm(nr_cpus=n_vcpus, trace=Trace(enabled=False))
    kvm_mmu_init_tdp_mmu(kvm, pol, has_mirrored_tdp=td, inline_worker=True)
    vcpus = [kvm.create_vcpu() for _ in range(n_vcpus)]
    for v in vcpus:
        kvm_mmu_create(v)
    violations: list[str] = []

    def drive(ops):
        for v in vcpus:
            for op in ops:
                run_to_completion(vcpu_script(v, [op]))
                while kvm.arch.tdp_mmu_zap_wq:
                    run_to_completion(process_one_work(kvm))
                rcu_grace_period(kvm)

    def check(when):
        if check_every:
            for msg in tdp_mmu_invariants(kvm):
                violations.append(f"{when}: {msg}")

    drive(["run"])
    for i in range(n_cycles):
        drive(["smi", "run", "rsm", "run"])
        if check_every and (i + 1) % check_every == 0:
            check(f"cycle {i + 1}")
    check("end")
    st: Counter = kvm.arch.tdp_mmu_stats
    roles = {r.role.word for r in kvm.arch.tdp_mmu_roots}
    return {
        "policy": pol.name,
        "n_cycles": n_cycles,
        "n_vcpus": n_vcpus,
        "root_allocations": st["roots_allocated"],
        "direct_root_allocations": st["roots_allocated_direct"],
        "mirror_root_allocations": st["roots_allocated_mirror"],
        "root_reuses": st["roots_reused"],
        "roots_freed": st["roots_freed"],
        "roots_zapped": st["roots_zapped"],
        "page_table_pages_allocated": st["sp_allocated"],
        "live_roots": len(kvm.arch.tdp_mmu_roots),
        "distinct_live_roles": len(roles),
        "tdp_mmu_pages": kvm.arch.tdp_mmu_pages,
        "kvm_bugged": kvm.vm_bugged,
        "violations": violations,
    }


__all__ = ["BUILDERS", "RootsWorld", "smm_storm", "smm_storm_world", "memslot_update_world",
           "vm_destroy_world", "last_put_race_world", "lockless_walk_world", "vcpu_script",
           "BROKEN_POLICIES", "POLICIES"]
