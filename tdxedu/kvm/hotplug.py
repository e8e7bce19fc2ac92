"""Taking a CPU offline while TDs exist (CPU hotplug), as the kernel does it ([K616]):

* `tdx_offline_cpu` (the CPUHP teardown callback): while any TDX KeyID is allocated, refuse
  (-EBUSY) to offline the last online CPU of a package, because releasing a KeyID needs
  TDH.PHYMEM.CACHE.WB on every package ("TDX requires all packages to have an online CPU").
* `tdx_disable_virtualization_cpu` (KVM disabling virtualization on the CPU going down): walk
  that CPU's `associated_tdvcpus` list and flush each vCPU there (TDH.VP.FLUSH +
  `tdx_disassociate_vp`), with interrupts off: one atomic step here.

A vCPU that was left associated with an offline CPU can never be flushed (an IPI to an offline
CPU does not run), so its TD's HKID release fails with TDX_FLUSHVP_NOT_DONE.
"""

from __future__ import annotations

from ..trace import PREEMPT, WaitUntil
from .kvm import IN_GUEST_MODE

EBUSY = -16
SRC = "arch/x86/kvm/vmx/tdx.c"


def _keyid_in_use(host) -> bool:
    return bool(host.hkid_owner)  # the kernel: !ida_is_empty(&tdx_guest_keyid_pool)


def _mutations(host) -> set:
    out: set = set()
    for kvm in host.vms:
        out |= kvm.arch.tdx.mutations
    return out


def tdx_offline_cpu(host, cpu: int) -> int:
    """0 if `cpu` may go offline, else -EBUSY (the last online CPU of its package while a
    KeyID is allocated)."""
    if not _keyid_in_use(host) or "offline-last-package-cpu" in _mutations(host):  # mutant
        return 0
    per = host.module.lps_per_package
    pkg = cpu // per
    if any(host.cpu_online[c] for c in range(pkg * per, (pkg + 1) * per) if c != cpu):
        return 0
    host.trace.emit("pr_warn_ratelimited", "TDX requires all packages to have an online CPU",
                    cpu=cpu, source=SRC)
    return EBUSY


def tdx_disable_virtualization_cpu(host, cpu: int) -> None:
    """Flush every vCPU on `cpu`'s `associated_tdvcpus` list (the list shrinks as each is
    disassociated)."""
    from .tdx import tdx_flush_vp

    if "offline-skips-flush" in _mutations(host):  # mutant: the list is not walked
        return
    for vcpu in list(host.associated_tdvcpus[cpu]):
        err = tdx_flush_vp(vcpu, cpu)
        vcpu.kvm.kvm_bug_on(err is not None, "TDH.VP.FLUSH failed", err)


def cpu_down(host, cpu: int, who: str = "hotplug"):
    """Offline `cpu`: the TDX check, then (tasks migrated away: no vCPU still in guest mode
    there) disable virtualization on it, then mark it offline. Evaluates to 0 or -EBUSY."""
    yield PREEMPT
    if not host.cpu_online[cpu]:
        return 0
    err = tdx_offline_cpu(host, cpu)
    if err:
        return err
    running = [v for kvm in host.vms for v in kvm.vcpus
               if v.cpu == cpu and v.mode == IN_GUEST_MODE]
    for v in running:
        v.kicked = True
    if running:
        yield WaitUntil(lambda: all(v.mode != IN_GUEST_MODE for v in running),
                        f"vCPUs off cpu{cpu}")
    tdx_disable_virtualization_cpu(host, cpu)
    host.cpu_online[cpu] = False
    host.trace.emit("cpu_down", cpu, cpu=cpu, source="kernel/cpu.c")
    return 0
