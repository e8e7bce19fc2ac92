"""The host machine KVM runs on: the TDX module, physical CPUs, the page allocator, the
host-wide TDX state in `arch/x86/kvm/vmx/tdx.c` (per-CPU `associated_tdvcpus` lists, the
global `tdx_lock` mutex serialising SEAMCALLs that take module-global locks, the TDX KeyID
allocator). One Host can run several VMs (Dynamic PAMT is a global resource).

`Host(dynamic_pamt=True)` configures the module with Dynamic PAMT and gives the host the
kernel's DPAMT state (`self.pamt`, `tdxedu.kvm.pamt.TdxPamt`: refcounts, `pamt_lock`, the
page-allocation policy `pamt_policy`); with the default static PAMT `self.pamt` is None and
no DPAMT code runs.
"""

from __future__ import annotations

from ..tdx import TdxModule
from ..trace import PREEMPT, Trace
from .allocator import HostPageAllocator
from .locks import Mutex
from .pamt import TdxPamt


class Host:
    def __init__(self, *, memory: int = 64 << 20, num_packages: int = 1,
                 cpus_per_package: int = 4, trace: Trace | None = None,
                 fine_seamcalls: bool = False, dynamic_pamt: bool = False,
                 pamt_policy: str = "vcpu-cache", pamt_lock: bool = True, **module_kw):
        self.trace = trace if trace is not None else Trace()
        self.debug_errors: list[str] = []  # lockdep / RCU checks that fired (kvm/locks.py)
        self.softlockups: list[str] = []  # soft-lockup watchdog reports (kvm/tdx.py)
        self.module = TdxModule(memory=memory, num_packages=num_packages,
                                lps_per_package=cpus_per_package, trace=self.trace,
                                dynamic_pamt=dynamic_pamt, **module_kw)
        self.pamt = (TdxPamt(self, policy=pamt_policy, use_lock=pamt_lock) if dynamic_pamt
                     else None)
        self.nr_cpus = self.module.num_lps
        self.allocator = HostPageAllocator(self.module)
        self.associated_tdvcpus: list[list] = [[] for _ in range(self.nr_cpus)]
        self.tdx_lock = Mutex("tdx_lock", self.trace, self.debug_errors)
        self.pending_ipis = [0] * self.nr_cpus  # function-call IPIs not yet handled
        self.free_hkids = list(self.module.private_hkids)
        self.fine_seamcalls = fine_seamcalls
        # False while one thread runs a flow to its end (RunningTd's build and teardown): no
        # other actor can run, so a preemption point before each SEAMCALL would only cost time.
        self.preempt = True
        self.last_result: dict[int, object] = {}

    def tdx_guest_keyid_alloc(self) -> int:
        if not self.free_hkids:
            return -1
        return self.free_hkids.pop(0)

    def tdx_guest_keyid_free(self, hkid: int) -> None:
        self.free_hkids.append(hkid)
        self.free_hkids.sort()

    def one_cpu_per_package(self) -> list[int]:
        m = self.module
        return [p * m.lps_per_package for p in range(m.num_packages)]

    def seamcall(self, name: str, *args, cpu: int):
        """Issue a SEAMCALL from `cpu`: a preemption point, then the call (atomic, or with the
        module's own preemption points when `fine_seamcalls`)."""
        if self.preempt:
            yield PREEMPT
        if self.fine_seamcalls:
            res = yield from self.module.stepwise(name, *args, lp=cpu)
        else:
            res = getattr(self.module, name)(*args, lp=cpu)
        self.last_result[cpu] = res  # for outputs the glue reads later (PAMT removal hint)
        return res
