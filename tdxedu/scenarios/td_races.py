"""The explorer's TDX scenarios (the KVM side). Each is small enough to explore fully.

* busy-accept-<policy>: a runtime zap of a page while the guest accepts it
  (entry-lock contention; [M15] `tdx_locks.h`, [Y4]).
* busy-zero-step-<policy>: a zap while a vCPU's VP.ENTER holds the S-EPT tree for its 0-step
  check ([M15] `td_exit_stepping.c`).
* hkid-release-<policy>: the HKID released while a vCPU may still be loaded and entered
  (the 2024 v19 thread; [K-Mar24] [SC-Apr24]).
* vcpu-migration: a vCPU moving between pCPUs is flushed on the old one first ([K616]
`tdx_vcpu_load`).

Actor specs are plain functions of the world, so a built world can be cloned for replays.
"""

from __future__ import annotations

from ..kvm.tdx import (
    BUSY_POLICIES,
    TEARDOWN_POLICIES,
    tdx_vcpu_enter,
    tdx_vcpu_exit,
    tdx_vcpu_load,
)
from ..kvm.teardown import (
    kvm_gmem_release,
    kvm_mmu_notifier_release,
    kvm_put_kvm,
    tdx_terminate_vm,
)
from ..tdx.td import EPF_FAULTS_TO_ARM
from ..trace import WaitUntil
from .registry import scenario
from .world import TdWorld

PAGE = 4096


def _busy_accept_actors(w: TdWorld) -> dict:
    v = w.kvm.vcpus[0]
    return {"vcpu0": w.vcpu_thread(v, [("accept", PAGE), "run"], v.cpu, "vcpu0"),
            "zap": w.zap_private(PAGE, 1, "zap")}


def busy_accept(policy: str) -> TdWorld:
    """Page 1 is AUGed but not accepted; the guest accepts it while KVM zaps it."""
    return TdWorld(_busy_accept_actors, vcpus=1, pages=2, accept=False, busy_policy=policy)


def _busy_zero_step_actors(w: TdWorld) -> dict:
    v = w.kvm.vcpus[0]
    return {"vcpu0": w.vcpu_thread(v, ["run"], v.cpu, "vcpu0"),
            "zap": w.zap_private(0, 1, "zap")}


def busy_zero_step(policy: str) -> TdWorld:
    """0-step mitigation is active on vCPU 0 (seven EPT faults at one RIP on page 1: six are
    counted, the seventh records the GPA), so its next VP.ENTER takes the S-EPT tree
    exclusively while KVM zaps page 0."""
    w = TdWorld(_busy_zero_step_actors, vcpus=1, pages=2, accept=True, busy_policy=policy)
    v = w.kvm.vcpus[0]
    vp = v.arch.tdx.tdvpr_pa
    for _ in range(EPF_FAULTS_TO_ARM):
        w.module.tdh_vp_enter(vp, lp=v.cpu)
        w.module.td_exit(vp, "EPT_VIOLATION", PAGE, progressed=False, lp=v.cpu)
    w.trace.events.clear()
    return w


def _hkid_release_actors(w: TdWorld) -> dict:
    kvm = w.kvm
    v = kvm.vcpus[0]
    terminate = w.kt.teardown_policy == "terminate-vm"
    w.flags.update(vp_enter_failed=False, entered_after_vm_dead=False)

    def vcpu():
        # KVM_RUN holds vcpu->mutex (kvm_vcpu_ioctl) while the vCPU is loaded and entered.
        yield from v.mutex.lock("vcpu0")
        r = yield from tdx_vcpu_enter(v, 1)
        if r is not None and r.status.is_error:
            w.flags["vp_enter_failed"] = True
        elif r is not None and not r.exit_reason:
            if kvm.vm_dead:
                w.flags["entered_after_vm_dead"] = True
            yield from tdx_vcpu_exit(v, "HLT")
        v.mutex.unlock("vcpu0")
        w.done.add("vcpu0")

    def mm():
        if terminate:
            # The VMM's KVM_TDX_TERMINATE_VM: -EBUSY while a vCPU is in KVM_RUN, so retry.
            while (yield from tdx_terminate_vm(kvm, 0, "mm")) == -16:
                yield WaitUntil(lambda: not v.mutex.locked(), "vCPU mutex")
        yield from kvm_mmu_notifier_release(kvm, 0, "mm")
        w.done.add("mm")

    def closer():
        yield WaitUntil(lambda: {"vcpu0", "mm"} <= w.done, "vCPU thread and mm release")
        yield from kvm_put_kvm(kvm, 0, "close")  # vCPU fd
        yield from kvm_put_kvm(kvm, 0, "close")  # VM fd
        yield from kvm_gmem_release(kvm, 0, "close")  # last reference: kvm_destroy_vm

    return {"vcpu0": vcpu(), "mm": mm(), "close": closer()}


def hkid_release(policy: str) -> TdWorld:
    """The process exits: the mm is released (by another mm user, e.g. a vhost thread) while
    vCPU 0 is loaded on a new pCPU and runs once more, then every file closes. Under
    "terminate-vm" the VMM first issues KVM_TDX_TERMINATE_VM, which must wait for the vCPU's
    mutex and then keeps it out of the guest (the VM is dead)."""
    return TdWorld(_hkid_release_actors, vcpus=1, pages=1, teardown_policy=policy)


def _migration_actors(w: TdWorld) -> dict:
    v0, v1 = w.kvm.vcpus
    vp0 = v0.arch.tdx.tdvpr_pa

    def migrating():
        yield from w.vcpu_thread(v0, ["run"], 0, "vcpu0-a")
        yield from tdx_vcpu_load(v0, 1)
        w.flags["flushed_before_migrating"] = w.module.vcpus[vp0].assoc_lpid in (-1, 1)
        yield from w.vcpu_thread(v0, ["run"], 1, "vcpu0-b")

    return {"vcpu0": migrating(), "vcpu1": w.vcpu_thread(v1, ["run"], 1, "vcpu1"),
            "zap": w.zap_private(PAGE, 0, "zap")}


def vcpu_migration() -> TdWorld:
    """vCPU 0 runs on pCPU 0, then on pCPU 1, while vCPU 1 runs on pCPU 1 and KVM zaps a
    page (TRACK + kick). At every entry on the new pCPU the module must see vCPU 0 flushed."""
    return TdWorld(_migration_actors, vcpus=2, pages=2)


for _p in BUSY_POLICIES:
    scenario(f"busy-accept-{_p}",
             f"zap a page while the guest ACCEPTs it, BUSY policy {_p}",
             max_steps=120)(lambda p=_p: busy_accept(p))
    scenario(f"busy-zero-step-{_p}",
             f"zap a page while a 0-step VP.ENTER holds the S-EPT tree, BUSY policy {_p}",
             max_steps=120)(lambda p=_p: busy_zero_step(p))
for _p in TEARDOWN_POLICIES:
    scenario(f"hkid-release-{_p}",
             f"mm release racing with a vCPU loaded again, teardown policy {_p}",
             max_steps=200)(lambda p=_p: hkid_release(p))
scenario("vcpu-migration", "a vCPU moves between pCPUs while another runs and KVM zaps",
         max_steps=200)(vcpu_migration)
