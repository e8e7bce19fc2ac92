"""`struct kvm` and `struct kvm_vcpu`: the host-side state every KVM flow touches.

What is modelled (virt/kvm/kvm_main.c, arch/x86/kvm/x86.c): the VM reference count
(`users_count`; each guest_memfd file holds one, [AH-RFC]), the
dead/bugged flags and KVM_BUG_ON, `kvm->lock`, `kvm->slots_lock`, `mmu_lock` as a waiting
rwlock, vCPUs with their mutex, the pCPU they are loaded on, guest mode and requests.
`kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)` kicks every vCPU in guest mode with an
IPI and waits for each to acknowledge ([K616] `tdx_track`).
"""

from __future__ import annotations

from types import SimpleNamespace

from ..trace import Trace, WaitUntil
from .locks import Mutex, RwLock

OUTSIDE_GUEST_MODE = "OUTSIDE_GUEST_MODE"
IN_GUEST_MODE = "IN_GUEST_MODE"
EXITING_GUEST_MODE = "EXITING_GUEST_MODE"

KVM_REQ_OUTSIDE_GUEST_MODE = "KVM_REQ_OUTSIDE_GUEST_MODE"
KVM_REQ_VM_DEAD = "KVM_REQ_VM_DEAD"
KVM_REQ_MMU_FREE_OBSOLETE_ROOTS = "KVM_REQ_MMU_FREE_OBSOLETE_ROOTS"


class KvmVcpu:
    def __init__(self, kvm: Kvm, vcpu_id: int):
        self.kvm = kvm
        self.vcpu_id = vcpu_id
        self.name = f"vcpu{vcpu_id}"
        self.cpu = -1  # pCPU it was last loaded on (vcpu->cpu)
        self.mutex = Mutex(f"vcpu{vcpu_id}->mutex", kvm.trace, kvm.debug_errors)
        self.mode = OUTSIDE_GUEST_MODE
        self.requests: set[str] = set()
        self.kicked = False  # an IPI is pending for this vCPU while in guest mode
        self.arch = SimpleNamespace()  # arch state (MMU roots live here)

    def __repr__(self) -> str:
        return f"<{self.name} cpu={self.cpu} {self.mode}>"


class Kvm:
    def __init__(self, *, nr_cpus: int = 4, trace: Trace | None = None, name: str = "vm",
                 debug_errors: list | None = None):
        if nr_cpus < 1:
            raise ValueError("nr_cpus must be >= 1")
        self.name = name
        self.trace = trace if trace is not None else Trace()
        self.nr_cpus = nr_cpus
        self.users_count = 1
        self.vm_dead = False
        self.vm_bugged = False
        self.bugs: list[str] = []
        self.warnings: list[str] = []  # WARN_ON_ONCE splats that did not bug the VM
        # Debug-kernel checks that fired (lockdep, RCU): named checks, not KVM_BUG_ONs. A VM
        # on a `Host` shares the host's list (`Host.debug_errors`).
        self.debug_errors: list[str] = [] if debug_errors is None else debug_errors
        self.lock = Mutex("kvm->lock", self.trace, self.debug_errors)
        self.slots_lock = Mutex("kvm->slots_lock", self.trace, self.debug_errors)
        self.mmu_lock = RwLock("kvm->mmu_lock", self.trace, self.debug_errors)
        self.vcpus: list[KvmVcpu] = []
        self.arch = SimpleNamespace()
        self.destroyed = False
        self.sleep_bugs: list[str] = []  # might_sleep() splats ("might-sleep" invariant)

    # --- references -----------------------------------------------------------------------
    def kvm_get_kvm(self) -> None:
        self.users_count += 1

    def kvm_put_kvm(self) -> bool:
        """Drop a reference; True when it was the last one (kvm_destroy_vm must run)."""
        if self.users_count <= 0:
            self.kvm_bug_on(True, "kvm_put_kvm on a VM with no users")
            return False
        self.users_count -= 1
        return self.users_count == 0

    # --- dead / bugged --------------------------------------------------------------------
    def kvm_vm_dead(self) -> None:
        self.vm_dead = True
        for v in self.vcpus:
            v.requests.add(KVM_REQ_VM_DEAD)

    def kvm_bug_on(self, cond, msg: str, *details) -> bool:
        """KVM_BUG_ON: a WARN, and the VM is marked bugged and dead. `details` are appended
        to the message only when the condition holds (no formatting on the hot path)."""
        if cond:
            if details:
                msg = f"{msg}: {', '.join(str(d) for d in details)}"
            self.vm_bugged = True
            self.kvm_vm_dead()
            self.bugs.append(msg)
            self.trace.emit("KVM_BUG_ON", msg, source="include/linux/kvm_host.h")
        return bool(cond)

    def might_sleep(self, who: str, what: str) -> None:
        """`might_sleep()`: `who` is about to do something that can sleep (`what`); holding
        the `mmu_lock` spinning rwlock there is a "sleeping function called from invalid
        context" bug (include/linux/kernel.h, kernel/sched/core.c __might_sleep)."""
        lock = self.mmu_lock
        if who in lock.readers or lock.writer == who:
            msg = (f"might-sleep: BUG: sleeping function called from invalid context: {what} "
                   f"by {who} with {lock.name} held")
            self.sleep_bugs.append(msg)
            self.trace.emit("might_sleep", what, who, source="kernel/sched/core.c")

    def warn_on(self, cond, msg: str, *details) -> bool:
        """WARN_ON_ONCE without KVM_BUG_ON: a splat in the log, the VM keeps running (e.g.
        a failed TDH.PHYMEM.PAGE.RECLAIM, whose page is then leaked, [K616])."""
        if cond:
            if details:
                msg = f"{msg}: {', '.join(str(d) for d in details)}"
            self.warnings.append(msg)
            self.trace.emit("WARN", msg, source="include/asm-generic/bug.h")
        return bool(cond)

    # --- vCPUs ----------------------------------------------------------------------------
    def create_vcpu(self) -> KvmVcpu:
        v = KvmVcpu(self, len(self.vcpus))
        self.vcpus.append(v)
        return v

    def kvm_make_all_cpus_request(self, req: str, who: str = "", exclude=None,
                                  wait: bool = True):
        """Set `req` on every vCPU, IPI those in guest mode and wait for them to leave it
        (KVM_REQUEST_WAIT | KVM_REQUEST_NO_ACTION for KVM_REQ_OUTSIDE_GUEST_MODE).
        `wait=False` only for the known-bad variant "track-no-ipi-wait" (tdxedu.mutants)."""
        targets = []
        skip = exclude if isinstance(exclude, list | tuple | set) else (exclude,)
        for v in self.vcpus:
            if any(v is x for x in skip):
                continue
            v.requests.add(req)
            if v.mode == IN_GUEST_MODE:
                v.kicked = True
                targets.append(v)
        if self.trace.enabled:
            self.trace.emit("kvm_make_all_cpus_request", req, f"ipi={len(targets)}",
                            source="virt/kvm/kvm_main.c")
        if targets and wait:
            yield WaitUntil(lambda: all(t.mode != IN_GUEST_MODE for t in targets),
                            f"IPI acknowledgement from {', '.join(t.name for t in targets)}")
