"""A running TD of any size and vCPU count, and its teardown under a named strategy.

    td = RunningTd(memory="16M", vcpus=4)
    report = td.teardown(strategy="v6.16")
    report.counts["tdh_mem_page_remove"], report.leaked_pages, report.hkid_state

The build follows KVM's ioctls ([K616]): KVM_TDX_INIT_VM, KVM_TDX_INIT_VCPU on a
CPU each, KVM_TDX_INIT_MEM_REGION for the initial image, KVM_TDX_FINALIZE_VM; the rest of
guest memory is faulted in at runtime (PAGE.AUG) and accepted by the guest.
The teardown follows the chosen policy's order of file closes and hooks (`tdxedu.kvm.teardown`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..kvm.host import Host
from ..kvm.kvm import Kvm
from ..kvm.pamt import check_alloc_policy, tdx_topup_pamt_cache, vcpu_pamt_cache
from ..kvm.tdx import (
    BUSY_POLICIES,
    TEARDOWN_POLICIES,
    KvmTdx,
    tdx_init_mem_region,
    tdx_map_private_gfn,
    tdx_td_finalize,
    tdx_td_init,
    tdx_vcpu_create,
    tdx_vcpu_enter,
    tdx_vcpu_exit,
    tdx_vcpu_init,
)
from ..kvm.teardown import (
    kvm_gmem_release,
    kvm_mmu_notifier_release,
    kvm_put_kvm,
    tdx_terminate_vm,
)
from ..tdx.pamt import PAGE_SIZE
from ..trace import Trace, run_to_completion
from ..units import parse_size


@dataclass
class TeardownReport:
    strategy: str
    counts: dict[str, int]
    leaked_pages: list[tuple[int, str]]
    hkid_state: str
    host_pages_in_use: int
    bugs: list[str]
    errors: list[str]
    trace: Trace = field(repr=False)
    cleared_pages: int = 0
    pamt_pairs: int = 0  # Dynamic PAMT: page pairs still installed in the module
    pamt_refcounts: int = 0  # Dynamic PAMT: sum of the kernel's pamt_refcounts
    pamt_warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.leaked_pages or self.bugs or self.errors or self.host_pages_in_use
                    or self.pamt_pairs or self.pamt_refcounts or self.pamt_warnings)

    def summary(self) -> str:
        lines = [f"teardown strategy {self.strategy}: "
                 f"{'clean' if self.ok else 'PROBLEMS'}; HKID {self.hkid_state}; "
                 f"{len(self.leaked_pages)} pages leaked; {self.host_pages_in_use} host pages "
                 f"still allocated"]
        for leaf, n in sorted(self.counts.items()):
            lines.append(f"  {leaf:<28} {n}")
        lines += [f"  KVM_BUG_ON: {b}" for b in self.bugs]
        lines += [f"  allocator: {e}" for e in self.errors]
        return "\n".join(lines)


class RunningTd:
    """Build a TD and bring it to the running state, all memory mapped and accepted."""

    def __init__(self, memory=16 << 20, vcpus: int = 2, *, packages: int = 1,
                 cpus_per_package: int | None = None, busy_policy: str = "kick-retry-once",
                 initial_pages: int = 1, clear_pages: bool = True, accept: bool = True,
                 trace: bool = True, dynamic_pamt: bool = False,
                 pamt_policy: str = "vcpu-cache", pamt_lock: bool = True,
                 deferred: bool = False, kernel: str = "v6.16", host: Host | None = None,
                 name: str = "vm"):
        """`host`: build on an existing `Host` (several TDs per host; the host's own size,
        packages and Dynamic PAMT setting then apply); `name` names its `struct kvm`."""
        size = parse_size(memory)
        if isinstance(vcpus, bool) or not isinstance(vcpus, int):
            raise TypeError("vcpus must be an int")
        if vcpus < 1:
            raise ValueError(f"a TD needs at least one vCPU, got vcpus={vcpus}")
        if busy_policy not in BUSY_POLICIES:
            raise ValueError(f"unknown busy policy {busy_policy!r}; allowed: "
                             f"{', '.join(BUSY_POLICIES)}")
        if packages < 1:
            raise ValueError("packages must be >= 1")
        self.pages = size // PAGE_SIZE
        if not 0 <= initial_pages <= self.pages:
            raise ValueError(f"initial_pages must be between 0 and {self.pages}")
        cpp = cpus_per_package or max(1, -(-vcpus // packages))
        # Host memory: guest pages + S-EPT pages + control pages, rounded up to 2M, plus slack.
        tables = self.pages // 512 + self.pages // (512 * 512) + 8
        ctl = 16 + vcpus * 8
        host_mem = (self.pages + tables + ctl + 1024) * PAGE_SIZE
        host_mem = -(-host_mem // (2 << 20)) * (2 << 20)
        if dynamic_pamt:  # room for page pairs (2 per 2 MB) and per-vCPU PAMT caches
            check_alloc_policy(pamt_policy)
            host_mem += (host_mem // (2 << 20) * 2 + 10 * vcpus + 1024) * PAGE_SIZE
            host_mem = -(-host_mem // (2 << 20)) * (2 << 20)
        if host is not None:
            self.trace, self.host = host.trace, host
        else:
            self.trace = Trace(enabled=trace)
            self.host = Host(memory=host_mem, num_packages=packages, cpus_per_package=cpp,
                             trace=self.trace, dynamic_pamt=dynamic_pamt,
                             pamt_policy=pamt_policy, pamt_lock=pamt_lock,
                             x86_bug_tdx_pw_mce=clear_pages)
        self.kvm = Kvm(nr_cpus=self.host.nr_cpus, trace=self.trace, name=name,
                       debug_errors=self.host.debug_errors)
        self.kt = KvmTdx(self.kvm, self.host, busy_policy=busy_policy, clear_pages=clear_pages,
                         kernel=kernel)
        self.kvm.kvm_get_kvm()  # the guest_memfd file's reference
        # `deferred=True` hands the build back as `build_steps` (a generator that yields at
        # every preemption point) for a Stepper to drive; otherwise it runs now.
        self.build_steps = self._build(vcpus, initial_pages, accept)
        if not deferred:
            self._run_alone(self.build_steps)
            self.build_steps = None  # spent; (a generator would also stop deepcopy)

    def _build(self, nvcpus: int, initial_pages: int, accept: bool):
        kvm = self.kvm
        yield from tdx_td_init(kvm, cpu=0)
        for i in range(nvcpus):
            v = kvm.create_vcpu()
            tdx_vcpu_create(v)
            yield from tdx_vcpu_init(v, cpu=i % self.host.nr_cpus)
        v0 = kvm.vcpus[0]
        pamt = self.host.pamt
        for i in range(initial_pages):
            if pamt is not None:  # KVM_TDX_INIT_MEM_REGION is a vCPU ioctl: top up first
                tdx_topup_pamt_cache(self.host, vcpu_pamt_cache(v0))
            yield from tdx_init_mem_region(kvm, i * PAGE_SIZE, v0.cpu)
        yield from tdx_td_finalize(kvm)
        # Runtime: vCPU 0 faults in and accepts the rest of memory, then every vCPU runs once.
        for i in range(initial_pages, self.pages):
            if pamt is not None:  # mmu_topup_memory_caches, before mmu_lock [V6-09]
                tdx_topup_pamt_cache(self.host, vcpu_pamt_cache(v0))
            err = yield from tdx_map_private_gfn(kvm, i * PAGE_SIZE, v0.cpu, v0)
            if err is not None:
                raise RuntimeError(f"private fault at {i * PAGE_SIZE:#x} failed: {err}")
        for v in kvm.vcpus:
            r = yield from tdx_vcpu_enter(v, v.cpu)
            if r is None or r.status.is_error:
                raise RuntimeError(f"{v.name} could not enter: {r}")
            if v is v0 and accept:
                vp = v.arch.tdx.tdvpr_pa
                for i in range(initial_pages, self.pages):
                    self.host.module.tdg_mem_page_accept(vp, i * PAGE_SIZE, 0, lp=v.cpu)
            yield from tdx_vcpu_exit(v, "HLT")

    def teardown(self, strategy: str = "v6.16") -> TeardownReport:
        if strategy not in TEARDOWN_POLICIES:
            raise ValueError(f"unknown teardown strategy {strategy!r}; allowed: "
                             f"{', '.join(TEARDOWN_POLICIES)}")
        if self.kvm.destroyed:
            raise ValueError("this TD has already been torn down; build a new RunningTd")
        self.kt.teardown_policy = strategy
        module = self.host.module
        before = dict(module.counts)
        start = len(self.trace)
        self._run_alone(self._teardown(strategy))
        counts = {k: v - before.get(k, 0) for k, v in module.counts.items()
                  if v - before.get(k, 0)}
        kt = self.kt
        hkid = "leaked (still assigned)" if kt.hkid_assigned else "free"
        tr = Trace(events=self.trace.events[start:], enabled=False)
        pamt = self.host.pamt
        return TeardownReport(strategy, counts, list(kt.leaked), hkid,
                              self.host.allocator.in_use, list(self.kvm.bugs),
                              list(self.host.allocator.errors) + list(self.host.debug_errors),
                              tr, kt.cleared_pages,
                              pamt.pairs_installed() if pamt else 0,
                              sum(pamt.pamt_refcounts.values()) if pamt else 0,
                              list(pamt.warnings) if pamt else [])

    def _run_alone(self, gen) -> None:
        """Run a flow to its end with nothing interleaved (no preemption points needed)."""
        self.host.preempt = False
        try:
            run_to_completion(gen)
        finally:
            self.host.preempt = True

    def teardown_steps(self, strategy: str = "v6.16"):
        """The teardown as a generator (one yield per preemption point), for steppers; use
        `teardown()` to run it to the end and get a report."""
        if strategy not in TEARDOWN_POLICIES:
            raise ValueError(f"unknown teardown strategy {strategy!r}; allowed: "
                             f"{', '.join(TEARDOWN_POLICIES)}")
        self.kt.teardown_policy = strategy
        return self._teardown(strategy)

    def _teardown(self, strategy: str):
        kvm = self.kvm
        if strategy == "terminate-vm":
            yield from tdx_terminate_vm(kvm)
        for _ in kvm.vcpus:  # vCPU fds close: nothing TDX-specific (Stage A)
            yield from kvm_put_kvm(kvm)
        yield from kvm_mmu_notifier_release(kvm)  # Stage B
        yield from kvm_put_kvm(kvm)  # the VM fd
        yield from kvm_gmem_release(kvm)  # Stage C; its put is the last: kvm_destroy_vm


__all__ = ["RunningTd", "TeardownReport", "KvmTdx"]
