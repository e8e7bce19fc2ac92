"""A small running TD as a `World` for the scheduler and the explorer, plus reusable actors.

The fingerprint is the whole model state that can influence what happens next (module
locks, S-EPT states, epochs, vCPU association and modes, KVM flags and locks); the trace is
deliberately not part of it, so conditions must be read from state, never from the trace.
"""

from __future__ import annotations

from ..kvm.kvm import IN_GUEST_MODE, OUTSIDE_GUEST_MODE
from ..kvm.tdx import tdx_handle_ept_violation, tdx_sept_remove_private_spte, tdx_vcpu_enter
from ..sim.engine import World
from ..tdx import status as st
from ..trace import PREEMPT, WaitUntil
from .td import RunningTd


def _lock_state(lock) -> tuple:
    if hasattr(lock, "readers"):
        return (lock.writer, tuple(sorted(lock.readers)), getattr(lock, "host_priority", None))
    if hasattr(lock, "tdhp"):
        return (lock.holder, lock.tdhp)
    return (lock.owner,)


def snapshot(td: RunningTd) -> tuple:
    m, kvm, kt = td.host.module, td.kvm, td.kt
    tds = []
    for pa, t in sorted(m.tds.items()):
        tdcs = t.tdcs
        sept = () if tdcs is None else tuple(
            (k, e.state, e.hpa, _lock_state(e.lock)) for k, e in sorted(tdcs.sept.entries.items()))
        cs = () if tdcs is None else (tdcs.op_state, tdcs.td_epoch, tuple(tdcs.refcount),
                                      tdcs.num_assoc_vcpus, _lock_state(tdcs.epoch_lock),
                                      _lock_state(tdcs.sept_lock))
        vps = tuple((v.pa, v.state, v.assoc_lpid, v.vcpu_epoch, tuple(v.epf_gpas), v.epf_count)
                    for v in t.vcpus.values())
        tds.append((pa, t.lifecycle, t.chldcnt, cs, sept, vps))
    pamt = tuple((pfn, e.pt, e.owner, e.bepoch, _lock_state(e.lock))
                 for pfn, e in sorted(m.pamt.entries.items()) if e.pt or e.lock.readers
                 or e.lock.writer or e.lock.host_priority)
    vcpus = tuple((v.cpu, v.mode, v.kicked, tuple(sorted(v.requests)), v.mutex.owner)
                  for v in kvm.vcpus)
    k = (kvm.users_count, kvm.vm_dead, kvm.vm_bugged, _lock_state(kvm.mmu_lock),
         kvm.lock.owner, td.host.tdx_lock.owner, kt.hkid, kt.hkid_leaked, kt.wait_for_sept_zap,
         tuple(sorted(kt.mirror.items())), tuple(sorted(kt.sept_pages)), len(kt.leaked),
         kvm.destroyed, tuple(len(x) for x in td.host.associated_tdvcpus),
         tuple(td.host.pending_ipis))
    mem = (tuple(sorted((k, tuple(sorted(v))) for k, v in m.dirty_keyids.items())),
           tuple(sorted(m.td_data.items())), tuple(td.host.free_hkids),
           tuple(td.host.cpu_online))
    return (tuple(tds), pamt, vcpus, k, tuple(sorted(m.kot.items())), mem)


class TdWorld(World):
    """A built TD (all pages mapped) whose trace starts empty when the actors start.

    `spec(world)` returns the actors; it must reach everything through `world` (no closures
    over objects of the original build), so the explorer can clone a built world."""

    cloneable = True

    def __init__(self, spec, *, vcpus: int = 1, pages: int = 2, accept: bool = True,
                 busy_policy: str = "kick-retry-once", teardown_policy: str = "v6.16",
                 packages: int = 1, cpus_per_package: int = 2, **td_options):
        """`td_options` go to `RunningTd` (e.g. dynamic_pamt=True, pamt_policy=...)."""
        self.spec = spec
        self.td = RunningTd(memory=pages * 4096, vcpus=vcpus, busy_policy=busy_policy,
                            accept=accept, packages=packages, initial_pages=0,
                            cpus_per_package=cpus_per_package, **td_options)
        self.td.kt.teardown_policy = teardown_policy
        self.kvm, self.kt, self.host = self.td.kvm, self.td.kt, self.td.host
        self.module = self.host.module
        self.trace = self.td.trace
        self.trace.events.clear()
        self.flags: dict[str, bool] = {}
        self.done: set[str] = set()
        self.fault_backoff = None  # what a BUSY fault retry waits for (None: just preempt)

    def actors(self):
        return self.spec(self)

    def fingerprint(self):
        # the reports `conditions()` reads are state too: two runs that differ only in a
        # watchdog report or a WARN must not be merged
        pamt = self.host.pamt
        reports = (len(self.host.softlockups), len(self.kvm.warnings),
                   0 if pamt is None else len(pamt.warnings))
        return (snapshot(self.td), tuple(sorted(self.flags.items())), tuple(sorted(self.done)),
                reports)

    def invariants(self) -> list[str]:
        return (self.module.check_invariants() + list(self.host.allocator.errors)
                + list(self.host.debug_errors) + self.host.check_invariants())

    def conditions(self) -> dict[str, bool]:
        kt = self.kt
        return {
            "kvm_bug": self.kvm.vm_bugged,
            "hkid_leaked": kt.hkid_leaked or (self.kvm.destroyed and kt.hkid_assigned),
            "pages_leaked": bool(kt.leaked),
            "kvm_warn": bool(self.kvm.warnings),
            "pamt_warn": self.host.pamt is not None and bool(self.host.pamt.warnings),
            "softlockup": bool(self.host.softlockups),
            **self.flags,
        }

    # --- actors -------------------------------------------------------------------------
    def vcpu_thread(self, vcpu, ops: list, cpu: int, name: str):
        """KVM_RUN on `cpu` until the guest has executed `ops` ("run", ("accept", gpa)):
        enter, run the guest one instruction per step (noticing IPIs), handle exits."""
        ops = list(ops)
        self.flags.setdefault("vp_enter_vcpu_associated", False)
        module = self.module
        vp = vcpu.arch.tdx.tdvpr_pa
        while ops:
            if self.kt.wait_for_sept_zap:
                yield WaitUntil(lambda: not self.kt.wait_for_sept_zap, "wait_for_sept_zap")
            r = yield from tdx_vcpu_enter(vcpu, cpu)
            if r is None:
                if self.kvm.vm_dead:
                    return  # KVM_RUN on a dead VM fails with -EIO (kvm_vcpu_ioctl)
                continue
            if r.status.matches(st.TDX_VCPU_ASSOCIATED):
                self.flags["vp_enter_vcpu_associated"] = True
            if r.status.is_error:
                if r.status.matches(st.TDX_OPERAND_BUSY):
                    continue  # "exit handled": re-enter
                self.flags["vp_enter_failed"] = True
                return
            if r.exit_reason == "EPT_VIOLATION":
                # the exit's GPA is in R8 (module td_exit.c, KVM tdexit_gpa())
                yield from self.handle_private_fault(vcpu, r.r8, cpu, name)
                continue
            while ops:
                yield PREEMPT
                if vcpu.kicked:  # the IPI: TD exit, acknowledging the request
                    module.td_exit(vp, "EXTERNAL_INTERRUPT", lp=cpu)
                    vcpu.mode, vcpu.kicked = OUTSIDE_GUEST_MODE, False
                    break
                op = ops[0]
                if op == "run":
                    ops.pop(0)
                    continue
                res = yield from module.stepwise("tdg_mem_page_accept", vp, op[1], 0, lp=cpu)
                if res.exit_reason == "EPT_VIOLATION":
                    vcpu.mode = OUTSIDE_GUEST_MODE
                    yield from self.handle_private_fault(vcpu, op[1], cpu, name)
                    break
                if not res.status.matches(st.TDX_OPERAND_BUSY) and not res.status.matches(
                        st.TDX_OPERAND_BUSY_HOST_PRIORITY):
                    ops.pop(0)
            if vcpu.mode == IN_GUEST_MODE and not ops:
                module.td_exit(vp, "HLT", lp=cpu)
                vcpu.mode = OUTSIDE_GUEST_MODE
        self.done.add(name)

    def handle_private_fault(self, vcpu, gpa: int, cpu: int, who: str):
        """`tdx_handle_ept_violation`: top up, map under mmu_lock for read, retry on BUSY."""
        yield from tdx_handle_ept_violation(vcpu, gpa, cpu, who, self.fault_backoff)

    def zap_private(self, gpa: int, cpu: int, name: str):
        """A runtime zap of one private page (e.g. a private->shared conversion), mmu_lock
        held for write. Mutant "zap-under-read-lock" (`tdxedu.mutants.lockdep`) takes it for
        read, as the fault path does."""
        shared = "zap-under-read-lock" in self.kt.mutations  # mutant
        lock = self.kvm.mmu_lock
        yield from (lock.read_lock(name) if shared else lock.write_lock(name))
        try:
            yield from tdx_sept_remove_private_spte(self.kvm, gpa, cpu)
        finally:
            if shared:
                lock.read_unlock(name)
            else:
                lock.write_unlock(name)
        self.done.add(name)
