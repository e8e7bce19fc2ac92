"""KVM's TDX glue (`arch/x86/kvm/vmx/tdx.c`), with kernel function names.

Every function that can sleep, wait for an IPI or issue a SEAMCALL is a generator (drive it
with `yield from`, or `run_to_completion` when nothing else runs). Behaviour that changed
across versions or patch series is a named policy on this one code path:

* BUSY handling on the zap path: ``"retry-loop"`` (pre-merge out-of-tree code: loop while
  BUSY, [Y-RFC]), ``"kick-retry-once"`` (6.16: set `wait_for_sept_zap`, kick every vCPU out,
  retry exactly once, then KVM_BUG_ON, [Y4] [K616]; 6.19's `tdh_do_no_vcpus`, [S20]),
  ``"no-retry"`` (any BUSY is a KVM_BUG_ON).
* `kernel` (``"v6.16"``, ``"v6.19"``): which upstream kernel's reaction to a failed SEAMCALL
  and which function names the flows follow (docs/conformance.md section 5).
* Teardown and its proposed orderings live in `tdxedu.kvm.teardown`.
* Dynamic PAMT ([V6-09]): on a `Host(dynamic_pamt=True)` every page handed to the module
  first gets its PAMT reference (`tdxedu.kvm.pamt`); with static PAMT those hooks do nothing.
"""

from __future__ import annotations

from ..tdx import status as st
from ..tdx.pamt import PAGE_SIZE
from ..tdx.sept import level_size
from ..trace import PREEMPT, WaitUntil
from .kvm import IN_GUEST_MODE, KVM_REQ_OUTSIDE_GUEST_MODE, OUTSIDE_GUEST_MODE, Kvm, KvmVcpu
from .locks import lockdep_assert_held_write
from .pamt import (
    Errno,
    dpamt_alloc_sept_page,
    dpamt_free_sept_page,
    dpamt_get_guest_page,
    dpamt_gmem_prepare,
    dpamt_put_guest_page,
    tdx_alloc_control_page,
    tdx_topup_pamt_cache,
    vcpu_pamt_cache,
)

BUSY_POLICIES = ("kick-retry-once", "retry-loop", "no-retry")
# Upstream kernels whose reaction to each SEAMCALL status the model follows (docs/conformance.md
# section 5): [K616-TDX] and [K619-TDX]; 6.19 turned most WARNs into TDX_BUG_ON ([S17]).
KERNELS = ("v6.16", "v6.19")
TEARDOWN_POLICIES = ("v6.16", "terminate-vm", "v19-notifier", "flush-at-vcpu-free")

TD_STATE_UNINITIALIZED = "TD_STATE_UNINITIALIZED"
TD_STATE_INITIALIZED = "TD_STATE_INITIALIZED"
TD_STATE_RUNNABLE = "TD_STATE_RUNNABLE"
VCPU_TD_STATE_UNINITIALIZED = "VCPU_TD_STATE_UNINITIALIZED"
VCPU_TD_STATE_INITIALIZED = "VCPU_TD_STATE_INITIALIZED"

TDX_EXTENDMR_CHUNKSIZE = 256  # TDH.MR.EXTEND measures 256 bytes per call
TDX_SEAMCALL_RETRIES = 10000  # CACHE.WB resume cap ([K616])
SRC = "arch/x86/kvm/vmx/tdx.c"


def check_policy(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")
    return value


class KvmTdx:
    """`struct kvm_tdx` plus the private half of KVM's mirror EPT and the guest_memfd pages."""

    def __init__(self, kvm: Kvm, host, *, busy_policy: str = "kick-retry-once",
                 teardown_policy: str = "v6.16", clear_pages: bool = True,
                 kernel: str = "v6.16"):
        self.kvm = kvm
        self.host = host
        self.module = host.module
        # `yield from kt.sc(name, *args, cpu=cpu)` issues a SEAMCALL: `Host.seamcall` itself,
        # bound here rather than wrapped (one call fewer for each of ~4 SEAMCALLs per page).
        self.sc = host.seamcall
        self.busy_policy = check_policy("busy policy", busy_policy, BUSY_POLICIES)
        self.teardown_policy = check_policy("teardown policy", teardown_policy,
                                            TEARDOWN_POLICIES)
        self.kernel = check_policy("kernel", kernel, KERNELS)
        self.clear_pages = clear_pages  # MOVDIR64B clear (always before 6.18; erratum CPUs)
        self.hkid = -1
        self.state = TD_STATE_UNINITIALIZED
        self.tdr_pa = 0
        self.tdcs_pa: list[int] = []
        self.wait_for_sept_zap = False
        self.mirror: dict[int, int] = {}  # private GPA -> PA of mapped 4K leaves
        self.sept_pages: dict[tuple[int, int], int] = {}  # (level, GPA) -> S-EPT page PA
        self.gmem: dict[int, int] = {}  # guest_memfd: private GPA -> page it allocated
        self.gmem_prepared: dict[int, int] = {}  # "gmem-prepare": GPA -> pfn with a PAMT ref
        self.reclaim_hints: dict[int, bool] = {}  # DPAMT: PAMT_REMOVAL_HINT of each RECLAIM
        self.leaked: list[tuple[int, str]] = []
        self.hkid_leaked = False
        self.cleared_pages = 0
        # Known-bad variants (`tdxedu.mutants`): each name switches off one step at
        # one line below, marked "mutant <name>". Empty for every real policy.
        self.mutations: set[str] = set()
        kvm.arch.tdx = self
        host.vms.append(kvm)

    @property
    def hkid_assigned(self) -> bool:
        return self.hkid > 0

    def emit(self, op: str, *args, cpu=None, status=None) -> None:
        self.kvm.trace.emit(op, *args, cpu=cpu, status=status, source=SRC)

    def leak(self, pa: int, why: str) -> None:
        """Give a page up on purpose (never freed, never reused), with the reason. Mutant
        "reclaim-failure-unreported" (`tdxedu.mutants.faults`) forgets to say so."""
        if why.startswith("RECLAIM failed") and "reclaim-failure-unreported" in self.mutations:
            return  # mutant: the page is neither freed nor reported as leaked
        self.leaked.append((pa, why))

    def tdx_clear_page(self, pa: int, cpu: int) -> None:
        """MOVDIR64B over the page (6.16 `tdx_clear_page`; from 6.18 KVM calls
        `tdx_quirk_reset_page`, which skips it unless X86_BUG_TDX_PW_MCE: [AH-clear]
        [PULL618]). The trace names the function of `self.kernel`. It must come after the
        page's dirty lines are written back, or their write-back brings TD data back."""
        if "quirk-reset-ignores-erratum" in self.mutations:  # mutant
            return
        if self.clear_pages:
            self.cleared_pages += 1
            self.module.host_movdir64b(pa)
            if self.kvm.trace.enabled:
                self.emit("tdx_clear_page" if self.kernel == "v6.16" else "tdx_quirk_reset_page",
                          pa, cpu=cpu)


class VcpuTdx:
    """`struct vcpu_tdx`: the vCPU's TDVPR/TDCX pages and KVM-side state."""

    def __init__(self, vcpu: KvmVcpu):
        self.vcpu = vcpu
        self.tdvpr_pa = 0
        self.tdcx_pa: list[int] = []
        self.state = VCPU_TD_STATE_UNINITIALIZED
        self.guest_lp = -1  # the LP of the last TDH.VP.ENTER: the TD exit returns there
        vcpu.arch.tdx = self


def to_kvm_tdx(kvm: Kvm) -> KvmTdx:
    return kvm.arch.tdx


# --- TD build (KVM_TDX_INIT_VM, KVM_TDX_INIT_VCPU, KVM_TDX_INIT_MEM_REGION, FINALIZE) --------

def tdx_td_init(kvm: Kvm, cpu: int = 0):
    """KVM_TDX_INIT_VM (`__tdx_td_init`): HKID, TDR, MNG.CREATE, KEY.CONFIG on one CPU per
    package, MNG.ADDCX per TDCS page, MNG.INIT ([K616] `__tdx_td_init`)."""
    kt = to_kvm_tdx(kvm)
    if kt.state != TD_STATE_UNINITIALIZED:
        raise ValueError(f"KVM_TDX_INIT_VM needs {TD_STATE_UNINITIALIZED}, TD is {kt.state}")
    hkid = kt.host.tdx_guest_keyid_alloc(kvm.name)
    if hkid < 0:
        raise RuntimeError("no free TDX private KeyID (HKID) on this host")
    kt.hkid = hkid  # kvm_tdx->hkid is set at once (is_hkid_assigned: hkid > 0)
    kt.tdr_pa = yield from tdx_alloc_control_page(kt.host, "TDR", cpu)
    kt.tdcs_pa = []
    for _ in range(kt.module.tdcs_pages):
        kt.tdcs_pa.append((yield from tdx_alloc_control_page(kt.host, "TDCS", cpu)))
    # MNG.CREATE locks the module's KOT, as VPFLUSHDONE, CACHE.WB and KEY.FREEID of another
    # TD's teardown do: the global tdx_lock keeps them from returning BUSY ([K616]).
    yield from kt.host.tdx_lock.lock(kvm.name)
    try:
        yield from _build_call(kt, "tdh_mng_create", kt.tdr_pa, hkid, cpu=cpu)
    finally:
        kt.host.tdx_lock.unlock(kvm.name)
    for pkg_cpu in kt.host.one_cpu_per_package():
        yield from _build_call(kt, "tdh_mng_key_config", kt.tdr_pa, cpu=pkg_cpu)
    for pa in kt.tdcs_pa:
        yield from _build_call(kt, "tdh_mng_addcx", kt.tdr_pa, pa, cpu=cpu)
    yield from _build_call(kt, "tdh_mng_init", kt.tdr_pa, 0, cpu=cpu)
    kt.state = TD_STATE_INITIALIZED


EIO, EBUSY, EAGAIN, EINVAL = 5, 16, 11, 22
ERRNO_NAMES = {EIO: "-EIO", EBUSY: "-EBUSY", EAGAIN: "-EAGAIN", EINVAL: "-EINVAL"}


class KvmIoctlError(RuntimeError):
    """A KVM_TDX_* ioctl failed: `errno` (positive, EIO...) and the SEAMCALL `status`."""

    def __init__(self, name: str, status, errno: int):
        super().__init__(f"{name} failed during TD build: {status} ({ERRNO_NAMES[errno]})")
        self.name, self.status, self.errno = name, status, errno


# What the build ioctls do with a failed SEAMCALL ([K616-TDX] `__tdx_td_init`,
# `tdx_td_vcpu_init`, `tdx_gmem_post_populate`, `tdx_td_finalize`; 6.19 [S17]): statuses
# that map to an errno without a splat, then the reaction to any other error per kernel
# ("bug": KVM_BUG_ON / TDX_BUG_ON, "warn": WARN_ON_ONCE, "": none), always -EIO.
BUILD_REACTIONS: dict[str, tuple[dict, dict[str, str]]] = {
    "tdh_mng_create": ({st.TDX_RND_NO_ENTROPY: EAGAIN}, {"v6.16": "warn", "v6.19": "bug"}),
    "tdh_mng_key_config": ({}, {"v6.16": "bug", "v6.19": "bug"}),
    "tdh_mng_addcx": ({st.TDX_RND_NO_ENTROPY: EAGAIN}, {"v6.16": "warn", "v6.19": "bug"}),
    "tdh_mng_init": ({st.TDX_OPERAND_INVALID: EINVAL}, {"v6.16": "warn", "v6.19": "bug"}),
    "tdh_vp_create": ({}, {"v6.16": "bug", "v6.19": "bug"}),
    "tdh_vp_addcx": ({}, {"v6.16": "bug", "v6.19": "bug"}),
    "tdh_vp_init": ({}, {"v6.16": "bug", "v6.19": "bug"}),
    "tdh_mem_page_add": ({st.TDX_OPERAND_BUSY: EBUSY}, {"v6.16": "", "v6.19": "bug"}),
    "tdh_mr_extend": ({}, {"v6.16": "", "v6.19": "bug"}),
    "tdh_mr_finalize": ({st.TDX_OPERAND_BUSY: EBUSY}, {"v6.16": "bug", "v6.19": "bug"}),
}


def _build_call(kt: KvmTdx, name: str, *args, cpu: int):
    """A build-time SEAMCALL with the kernel's reaction to its failure (`BUILD_REACTIONS`):
    the ioctl fails with `KvmIoctlError`; undoing a half-built TD is not modelled."""
    r = yield from kt.sc(name, *args, cpu=cpu)
    if not r.status.is_error:
        return r
    quiet, splat = BUILD_REACTIONS[name]
    for status, errno in quiet.items():
        if r.status.matches(status):
            raise KvmIoctlError(name, r.status, errno)
    how = splat[kt.kernel]
    if how == "bug":
        kt.kvm.kvm_bug_on(True, f"{name} failed", r.status)
    elif how == "warn":
        kt.kvm.warn_on(True, f"{name} failed", r.status)
    raise KvmIoctlError(name, r.status, EIO)


def tdx_vcpu_create(vcpu: KvmVcpu) -> VcpuTdx:
    kt = to_kvm_tdx(vcpu.kvm)
    if kt.state != TD_STATE_INITIALIZED:
        raise ValueError("vCPUs can be created only in TD_STATE_INITIALIZED "
                         "([K616] tdx_vcpu_create)")
    vcpu.kvm.kvm_get_kvm()  # the vCPU file holds a VM reference
    return VcpuTdx(vcpu)


def tdx_vcpu_init(vcpu: KvmVcpu, cpu: int):
    """KVM_TDX_INIT_VCPU on the CPU the vCPU is loaded on: VP.CREATE, VP.ADDCX, VP.INIT.
    VP.INIT associates the vCPU with that CPU, so it joins its `associated_tdvcpus` list."""
    kt, vt = to_kvm_tdx(vcpu.kvm), vcpu.arch.tdx
    yield from tdx_vcpu_load(vcpu, cpu)
    vt.tdvpr_pa = yield from tdx_alloc_control_page(kt.host, "TDVPR", cpu)
    vt.tdcx_pa = []
    for _ in range(kt.module.tdcx_per_vcpu):
        vt.tdcx_pa.append((yield from tdx_alloc_control_page(kt.host, "TDCX", cpu)))
    yield from _build_call(kt, "tdh_vp_create", kt.tdr_pa, vt.tdvpr_pa, cpu=cpu)
    for pa in vt.tdcx_pa:
        yield from _build_call(kt, "tdh_vp_addcx", vt.tdvpr_pa, pa, cpu=cpu)
    yield from _build_call(kt, "tdh_vp_init", vt.tdvpr_pa, 0, vcpu.vcpu_id, cpu=cpu)
    vt.state = VCPU_TD_STATE_INITIALIZED


def tdx_vcpu_load(vcpu: KvmVcpu, cpu: int):
    """`tdx_vcpu_load`: moving to a new pCPU first flushes the vCPU on the *old* one with an
    IPI running TDH.VP.FLUSH (a failure is `tdx_flush_vp_on_cpu`'s KVM_BUG_ON), then joins
    the new CPU's list ([K616-TDX])."""
    kt = to_kvm_tdx(vcpu.kvm)
    if vcpu.cpu == cpu:
        return
    if vcpu.cpu != -1 and kt.hkid_assigned and "no-vp-flush-on-migration" not in kt.mutations:
        err = yield from tdx_flush_vp_on_cpu(vcpu)
        kt.kvm.kvm_bug_on(err is not None, "TDH.VP.FLUSH failed", err)
    vcpu.cpu = cpu
    kt.host.associated_tdvcpus[cpu].append(vcpu)
    kt.emit("tdx_vcpu_load", vcpu.name, cpu=cpu)


def tdx_flush_vp_on_cpu(vcpu: KvmVcpu):
    """IPI to `vcpu->cpu` running TDH.VP.FLUSH there (`tdx_flush_vp`): skipped for a vCPU that
    never finished KVM_TDX_INIT_VCPU, TDX_VCPU_NOT_ASSOCIATED tolerated, no retry; the vCPU
    leaves that CPU's list and `vcpu->cpu` becomes -1. Returns the error, if any.

    The IPI handler runs with interrupts off on the target CPU, so it is one atomic step here;
    if another flush got there first (`vcpu->cpu` changed), it does nothing, as
    `tdx_flush_vp` skips a vCPU that is no longer on the current CPU ([K616])."""
    kt = to_kvm_tdx(vcpu.kvm)
    cpu = vcpu.cpu
    if cpu == -1:
        return None
    if not kt.host.cpu_online[cpu]:
        # smp_call_function_single() to an offline CPU returns -ENXIO without running the
        # handler; tdx_flush_vp_on_cpu only looks at the handler's error, so nothing is
        # flushed and the module keeps the vCPU associated ([K616]).
        return None
    yield from smp_call_function_single(kt, cpu)
    if vcpu.cpu != cpu:  # the handler ran and found the vCPU gone: nothing to flush
        kt.host.pending_ipis[cpu] -= 1
        return None
    kt.emit("smp_call_function_single", "tdx_flush_vp", vcpu.name, cpu=cpu)
    lp = 0 if "vp-flush-on-calling-cpu" in kt.mutations else cpu  # mutant: no IPI target
    err = tdx_flush_vp(vcpu, lp)
    kt.host.pending_ipis[cpu] -= 1
    return err


def tdx_flush_vp(vcpu: KvmVcpu, cpu: int):
    """`tdx_flush_vp` on `cpu` (IPI context, interrupts off): TDH.VP.FLUSH unless the vCPU
    never finished KVM_TDX_INIT_VCPU, TDX_VCPU_NOT_ASSOCIATED tolerated, then
    `tdx_disassociate_vp`: off the CPU's `associated_tdvcpus` list, `vcpu->cpu = -1`
    ([K616]). Returns the error, if any."""
    kt, vt = to_kvm_tdx(vcpu.kvm), vcpu.arch.tdx
    err = None
    if vt.state == VCPU_TD_STATE_INITIALIZED:
        r = kt.module.tdh_vp_flush(vt.tdvpr_pa, lp=cpu)
        tolerated = (r.status.matches(st.TDX_VCPU_NOT_ASSOCIATED)
                     and "flush-not-associated-is-error" not in kt.mutations)  # mutant
        if r.status.is_error and not tolerated:
            err = r.status
    if vcpu.cpu != -1:
        kt.host.associated_tdvcpus[vcpu.cpu].remove(vcpu)
    vcpu.cpu = -1
    return err


def smp_call_function_single(kt: KvmTdx, cpu: int):
    """Send an IPI to `cpu` and wait until its handler may run: a vCPU in guest mode there
    takes a TD exit first, and no vCPU re-enters on that CPU until the handler is done
    (the caller decrements `pending_ipis[cpu]` when it is)."""
    kt.host.pending_ipis[cpu] += 1
    yield PREEMPT
    running = [v for v in kt.kvm.vcpus if v.cpu == cpu and v.mode == IN_GUEST_MODE]
    for v in running:
        v.kicked = True
    if running:
        yield WaitUntil(lambda: all(v.mode != IN_GUEST_MODE for v in running),
                        f"TD exit on cpu{cpu} for the IPI")


def tdx_init_mem_region(kvm: Kvm, gpa: int, cpu: int = 0, measure: bool = True):
    """KVM_TDX_INIT_MEM_REGION for one page: map the S-EPT tables, TDH.MEM.PAGE.ADD, then
    TDH.MR.EXTEND per 256-byte chunk (tdx.c `tdx_gmem_post_populate`)."""
    kt = to_kvm_tdx(kvm)
    err = yield from _link_tables(kt, gpa, cpu)
    if isinstance(err, Errno):  # no PAMT pages for an S-EPT page
        raise MemoryError(f"KVM_TDX_INIT_MEM_REGION {gpa:#x}: no PAMT pages ({err})")
    if err is not None:  # kvm_tdp_map_page failed: -EBUSY or -EIO (already a KVM_BUG_ON)
        raise KvmIoctlError("tdh_mem_sept_add", err,
                            EBUSY if err.matches(st.TDX_OPERAND_BUSY) else EIO)
    pa = kt.gmem.get(gpa) or (yield from _gmem_alloc(kt, gpa, cpu))
    if kt.host.pamt is not None:  # the populate path has no vCPU pool under "phys-prepare"
        err = yield from dpamt_get_guest_page(kt, gpa, pa, cpu)
        if err:
            raise MemoryError(f"KVM_TDX_INIT_MEM_REGION {gpa:#x}: no PAMT pages ({err})")
    yield from _build_call(kt, "tdh_mem_page_add", kt.tdr_pa, gpa, pa, 0, cpu=cpu)
    kt.mirror[gpa] = pa
    if measure:
        for off in range(0, PAGE_SIZE, TDX_EXTENDMR_CHUNKSIZE):
            yield from _build_call(kt, "tdh_mr_extend", kt.tdr_pa, gpa + off, cpu=cpu)


def tdx_td_finalize(kvm: Kvm, cpu: int = 0):
    """KVM_TDX_FINALIZE_VM: TDH.MR.FINALIZE, the TD becomes runnable."""
    kt = to_kvm_tdx(kvm)
    yield from _build_call(kt, "tdh_mr_finalize", kt.tdr_pa, cpu=cpu)
    kt.state = TD_STATE_RUNNABLE


def _gmem_alloc(kt: KvmTdx, gpa: int, cpu: int = 0):
    pa = kt.host.allocator.alloc_page("guest_memfd")
    kt.gmem[gpa] = pa
    if kt.host.pamt is not None:
        yield from dpamt_gmem_prepare(kt, gpa, pa, cpu)
    return pa


def _link_tables(kt: KvmTdx, gpa: int, cpu: int, vcpu: KvmVcpu | None = None):
    """`tdx_sept_link_private_spt` for every missing table above a 4K leaf (levels 3..1):
    BUSY is -EBUSY (the fault is retried), any other error a KVM_BUG_ON (-EIO) [K616-TDX]."""
    dpamt = kt.host.pamt is not None
    for level in (3, 2, 1):
        key = (level, gpa & ~(level_size(level) - 1))
        if key in kt.sept_pages:
            continue
        if dpamt:
            pa = yield from dpamt_alloc_sept_page(kt, cpu, vcpu)
            if pa < 0:
                return pa  # Errno
        else:
            pa = kt.host.allocator.alloc_page("S-EPT")
        r = yield from kt.sc("tdh_mem_sept_add", kt.tdr_pa, key[1], level, pa, cpu=cpu)
        if r.status.is_error:
            kt.kvm.kvm_bug_on(not r.status.matches(st.TDX_OPERAND_BUSY),
                              "TDH.MEM.SEPT.ADD failed", r.status)
            if dpamt:
                yield from dpamt_free_sept_page(kt, pa, cpu)
            else:
                kt.host.allocator.free_page(pa)
            return r.status
        kt.sept_pages[key] = pa
    return None


# --- runtime private fault (mmu_lock held for read) -------------------------------------

def tdx_map_private_gfn(kvm: Kvm, gpa: int, cpu: int, vcpu: KvmVcpu | None = None):
    """The private half of `kvm_tdp_mmu_map`: link missing tables, then
    `tdx_sept_set_private_spte` -> TDH.MEM.PAGE.AUG. A BUSY returns -EBUSY, which becomes
    RET_PF_RETRY and the EPT-violation handler retries locally ([Y0]).
    `vcpu` is the faulting vCPU (only the RFC "phys-prepare" PAMT policy needs it passed)."""
    kt = to_kvm_tdx(kvm)
    err = yield from _link_tables(kt, gpa, cpu, vcpu)
    if err is not None:
        return err
    if gpa in kt.mirror:
        return None
    pa = kt.gmem.get(gpa) or (yield from _gmem_alloc(kt, gpa, cpu))
    if kt.host.pamt is not None:
        err = yield from dpamt_get_guest_page(kt, gpa, pa, cpu, vcpu)
        if err:
            return err
    r = yield from kt.sc("tdh_mem_page_aug", kt.tdr_pa, gpa, 0, pa, cpu=cpu)
    if r.status.is_error:  # `tdx_mem_page_aug`: BUSY is -EBUSY, anything else KVM_BUG_ON
        fatal = (not r.status.matches(st.TDX_OPERAND_BUSY)
                 or "aug-busy-is-fatal" in kt.mutations)  # mutant
        kt.kvm.kvm_bug_on(fatal, "TDH.MEM.PAGE.AUG failed", r.status)
        if kt.host.pamt is not None and "no-pamt-put-on-aug-error" not in kt.mutations:
            yield from dpamt_put_guest_page(kt, gpa, pa, cpu)  # mutant no-pamt-put-on-...
        return r.status
    kt.mirror[gpa] = pa
    return None


def tdx_handle_ept_violation(vcpu: KvmVcpu, gpa: int, cpu: int, who: str, backoff=None):
    """A private EPT violation (`tdx_handle_ept_violation` -> `kvm_mmu_page_fault`): top up
    the MMU caches (on a Dynamic PAMT host the vCPU's PAMT page cache too; this may sleep, so
    it comes before `mmu_lock`, [V6-09]), map under `mmu_lock` held for read, and on -EBUSY
    (RET_PF_RETRY) go round again, topping up again ([Y0]). `backoff()`, if given, is what
    a retry waits for (a scenario's fairness: the lock holder gets to run)."""
    kvm = vcpu.kvm
    host = to_kvm_tdx(kvm).host
    mutations = to_kvm_tdx(kvm).mutations
    while not kvm.vm_dead:
        if host.pamt is not None and "topup-under-mmu-lock" not in mutations:
            tdx_topup_pamt_cache(host, vcpu_pamt_cache(vcpu), kvm=kvm, who=who)
        yield from kvm.mmu_lock.read_lock(who)
        try:
            if host.pamt is not None and "topup-under-mmu-lock" in mutations:  # mutant
                tdx_topup_pamt_cache(host, vcpu_pamt_cache(vcpu), kvm=kvm, who=who)
            err = yield from tdx_map_private_gfn(kvm, gpa, cpu)
        finally:
            kvm.mmu_lock.read_unlock(who)
        if err is None or not err.matches(st.TDX_OPERAND_BUSY):
            return err
        yield PREEMPT if backoff is None else backoff()


# --- BUSY handling on the zap path ------------------------------------------------------

def _zap_seamcall(kt: KvmTdx, name: str, *args, cpu: int):
    """A zap-path SEAMCALL under the BUSY policy, spelled the way `kt.kernel` spells it:
    6.19's `tdh_do_no_vcpus` macro ([S20]), or 6.16's retry written out in each caller
    between `tdx_no_vcpus_enter_start` and `tdx_no_vcpus_enter_stop` ([K616-TDX]). The two
    behave the same; only the names a trace shows differ. Evaluates to the final status."""
    if kt.kernel != "v6.16":
        return (yield from tdh_do_no_vcpus(kt, name, *args, cpu=cpu))
    r = yield from kt.sc(name, *args, cpu=cpu)
    if not r.status.matches(st.TDX_OPERAND_BUSY):
        return r.status
    if kt.busy_policy != "kick-retry-once":
        return (yield from _busy_without_kick(kt, name, args, cpu, r))
    yield from tdx_no_vcpus_enter_start(kt)
    r = yield from kt.sc(name, *args, cpu=cpu)
    tdx_no_vcpus_enter_stop(kt)
    return r.status


def _busy_without_kick(kt: KvmTdx, name: str, args: tuple, cpu: int, r):
    """The policies that never kick: "no-retry" gives up, "retry-loop" spins while BUSY
    (watched by the soft-lockup stand-in below)."""
    if kt.busy_policy == "retry-loop":
        tries = 1
        while r.status.matches(st.TDX_OPERAND_BUSY):
            if tries == SOFTLOCKUP_BUSY_RETRIES and kt.kvm.mmu_lock.held_for_write():
                softlockup(kt, name, tries, cpu)
            r = yield from kt.sc(name, *args, cpu=cpu)
            # the watchdog reports once; counting past its threshold would change nothing
            # but make every retry look new to the explorer (tdxedu/sim/reduce.py)
            tries = min(tries + 1, SOFTLOCKUP_BUSY_RETRIES + 1)
    return r.status


#: The model's stand-in for the soft-lockup watchdog (kernel/watchdog.c: "BUG: soft lockup -
#: CPU#%d stuck for %us!", after 2 x watchdog_thresh = 20 s of spinning without a schedule).
#: The model has no clock, so it counts: a zap that got TDX_OPERAND_BUSY this many times in a
#: row on one SEAMCALL with mmu_lock held for write is spinning with nothing to make the
#: contender go away (the pre-merge retry loop, [Y-RFC]); no correct policy retries more than
#: once ([Y4] [K616]). Reported as the world's ``softlockup`` condition (the run goes on, as
#: the CPU would).
SOFTLOCKUP_BUSY_RETRIES = 4


def softlockup(kt: KvmTdx, name: str, tries: int, cpu: int) -> None:
    msg = (f"soft lockup - CPU#{cpu} stuck: {name} got TDX_OPERAND_BUSY {tries} times in a "
           "row with kvm->mmu_lock held for write")
    kt.host.softlockups.append(f"watchdog: BUG: {msg}")
    kt.emit("BUG", msg, cpu=cpu)


def tdx_no_vcpus_enter_start(kt: KvmTdx):
    """6.16: keep vCPUs out of the guest (`wait_for_sept_zap`) and kick every one out, so the
    retried SEAMCALL meets no TDH.VP.ENTER or TDCALL ([Y4] [K616-TDX])."""
    kt.wait_for_sept_zap = "forget-wait-for-sept-zap" not in kt.mutations  # mutant
    yield from kt.kvm.kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)


def tdx_no_vcpus_enter_stop(kt: KvmTdx) -> None:
    """6.16: let vCPUs enter again."""
    kt.wait_for_sept_zap = False


def tdh_do_no_vcpus(kt: KvmTdx, name: str, *args, cpu: int):
    """6.19's macro ([S20]): issue the SEAMCALL; on BUSY keep vCPUs out, kick them, issue it
    once more (under the "kick-retry-once" policy). Evaluates to the final status."""
    r = yield from kt.sc(name, *args, cpu=cpu)
    if not r.status.matches(st.TDX_OPERAND_BUSY):
        return r.status
    if kt.busy_policy != "kick-retry-once":
        return (yield from _busy_without_kick(kt, name, args, cpu, r))
    kt.wait_for_sept_zap = "forget-wait-for-sept-zap" not in kt.mutations  # mutant
    yield from kt.kvm.kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)
    r = yield from kt.sc(name, *args, cpu=cpu)
    kt.wait_for_sept_zap = False
    return r.status


def tdx_track(kt: KvmTdx, cpu: int):
    """TDH.MEM.TRACK then an IPI to every vCPU, waiting for all to acknowledge, so no vCPU
    still runs in the block epoch. A failure is a KVM_BUG_ON and the kick happens anyway
    (6.16 and 6.19 alike, [K616-TDX] [S17]). No-op before RUNNABLE; then
    `lockdep_assert_held_write(&kvm->mmu_lock)` ([K616-TDX] tdx_track)."""
    if kt.state != TD_STATE_RUNNABLE:
        return st.TDX_SUCCESS
    lockdep_assert_held_write(kt.kvm.mmu_lock, "tdx_track")
    err = yield from _zap_seamcall(kt, "tdh_mem_track", kt.tdr_pa, cpu=cpu)
    kt.kvm.kvm_bug_on(err.is_error, "TDH.MEM.TRACK failed", err)
    skip = None
    if "track-kick-local-cpu-only" in kt.mutations:  # mutant: only vCPUs on this pCPU
        skip = [v for v in kt.kvm.vcpus if v.cpu != cpu]
    elif "track-kick-first-vcpu-only" in kt.mutations:  # mutant: stops after one IPI
        skip = [v for v in kt.kvm.vcpus if v.mode == IN_GUEST_MODE][1:]
    if skip is not None:
        yield from kt.kvm.kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE, exclude=skip)
        return err
    yield from kt.kvm.kvm_make_all_cpus_request(
        KVM_REQ_OUTSIDE_GUEST_MODE, wait="track-no-ipi-wait" not in kt.mutations)  # mutant
    return err


def tdx_sept_remove_private_spte(kvm: Kvm, gpa: int, cpu: int):
    """Remove one private 4K page while the TD runs, with mmu_lock held for write
    ([K616-TDX] [K619-TDX]; why the runtime path is used at all: Rick Edgecombe's TDX MMU
    Part 2 cover letter [RE-P2]).

    HKID assigned: BLOCK -> tdx_track -> REMOVE -> WBINVD(HKID) -> clear (6.16 splits this
    into `tdx_sept_zap_private_spte` and `tdx_sept_drop_private_spte`, 6.19 does it here).
    A failed BLOCK, REMOVE or WBINVD is a KVM_BUG_ON and the page is leaked; a failed TRACK
    is a KVM_BUG_ON and the removal goes on. Upstream, a removal without an HKID is a
    KVM_BUG_ON; only the never-merged orderings reclaim instead ("terminate-vm" once the VM
    is dead, [TERM-V5]; "v19-notifier"). Returns True when the page came back. Zapping a
    leaf is allowed only with mmu_lock held for write (`lockdep_assert_held_write` in
    `remove_external_spte`, [S-TDX])."""
    kt = to_kvm_tdx(kvm)
    pa = kt.mirror.get(gpa)
    if pa is None:
        return False
    lockdep_assert_held_write(kvm.mmu_lock, "remove_external_spte")
    if not kt.hkid_assigned:
        allowed = ((kt.teardown_policy == "terminate-vm" and kvm.vm_dead)
                   or kt.teardown_policy == "v19-notifier")
        if kvm.kvm_bug_on(not allowed, "remove a private SPTE without an HKID"):
            kt.leak(pa, "removal without HKID on a live VM")
            del kt.mirror[gpa]
            return False
        ok = yield from tdx_reclaim_page(kt, pa, cpu)
        del kt.mirror[gpa]
        if ok and kt.host.pamt is not None:
            yield from dpamt_put_guest_page(kt, gpa, pa, cpu, kt.reclaim_hints.pop(pa, False))
        return ok
    if kt.kernel == "v6.16":
        if not (yield from tdx_sept_zap_private_spte(kt, gpa, pa, cpu)):
            return False
        yield from _track_for_removal(kt, cpu)
        return (yield from tdx_sept_drop_private_spte(kt, gpa, pa, cpu))
    if not (yield from _block(kt, gpa, pa, cpu)):
        return False
    yield from _track_for_removal(kt, cpu)
    return (yield from _remove_and_wbinvd(kt, gpa, pa, cpu))


def tdx_sept_zap_private_spte(kt: KvmTdx, gpa: int, pa: int, cpu: int):
    """6.16: TDH.MEM.RANGE.BLOCK with the kick-and-retry-once; a failure is a KVM_BUG_ON."""
    return (yield from _block(kt, gpa, pa, cpu))


def tdx_sept_drop_private_spte(kt: KvmTdx, gpa: int, pa: int, cpu: int):
    """6.16: TDH.MEM.PAGE.REMOVE (kick-and-retry-once), WBINVD under the HKID, clear."""
    return (yield from _remove_and_wbinvd(kt, gpa, pa, cpu))


def _block(kt: KvmTdx, gpa: int, pa: int, cpu: int):
    err = yield from _zap_seamcall(kt, "tdh_mem_range_block", kt.tdr_pa, gpa, 0, cpu=cpu)
    if kt.kvm.kvm_bug_on(err.is_error, "TDH.MEM.RANGE.BLOCK failed", err):
        kt.leak(pa, f"BLOCK failed: {err}")
        return False
    return True


def _track_for_removal(kt: KvmTdx, cpu: int):
    if "skip-track" not in kt.mutations:  # mutant skip-track
        yield from tdx_track(kt, cpu)


def _remove_and_wbinvd(kt: KvmTdx, gpa: int, pa: int, cpu: int):
    kvm = kt.kvm
    err = yield from _zap_seamcall(kt, "tdh_mem_page_remove", kt.tdr_pa, gpa, 0, cpu=cpu)
    if err.is_error and "free-after-failed-remove" in kt.mutations:  # mutant
        del kt.mirror[gpa]  # treated as removed: guest_memfd will free the page
        return False
    if kvm.kvm_bug_on(err.is_error, "TDH.MEM.PAGE.REMOVE failed", err):
        kt.leak(pa, f"REMOVE failed: {err}")
        return False
    hint = kt.host.last_result[cpu].pamt_removal_hint
    status = st.TDX_SUCCESS
    if "clear-before-wbinvd" in kt.mutations:  # mutant: reset before the write-back
        kt.tdx_clear_page(pa, cpu)
    if "no-wbinvd-after-remove" not in kt.mutations:  # mutant no-wbinvd-after-remove
        status = (yield from kt.sc("tdh_phymem_page_wbinvd_hkid", kt.hkid, pa, cpu=cpu)).status
    del kt.mirror[gpa]
    if "wbinvd-failure-ignored" in kt.mutations:  # mutant: the status is not looked at
        status = st.TDX_SUCCESS
    if kvm.kvm_bug_on(status.is_error, "TDH.PHYMEM.PAGE.WBINVD failed", status):
        kt.leak(pa, "WBINVD failed")
        return False
    if "clear-before-wbinvd" not in kt.mutations:
        kt.tdx_clear_page(pa, cpu)
    if kt.host.pamt is not None and "pamt-put-missing-on-removal" not in kt.mutations:
        yield from dpamt_put_guest_page(kt, gpa, pa, cpu, hint)
    return True


def tdx_reclaim_page(kt: KvmTdx, pa: int, cpu: int):
    """`tdx_reclaim_page`: TDH.PHYMEM.PAGE.RECLAIM, then clear; a failure leaks the page."""
    ok = yield from __tdx_reclaim_page(kt, pa, cpu)
    if ok:
        kt.tdx_clear_page(pa, cpu)
    return ok


def __tdx_reclaim_page(kt: KvmTdx, pa: int, cpu: int):
    """`__tdx_reclaim_page`: TDH.PHYMEM.PAGE.RECLAIM alone (the TDR is written back before
    it is cleared). A failure is a WARN with RCX/RDX/R8 printed (6.16 `WARN_ON_ONCE`, 6.19
    `TDX_BUG_ON_3(..., NULL)`, which has no VM to bug) and the page is leaked ([K616-TDX]
    [S17])."""
    r = yield from kt.sc("tdh_phymem_page_reclaim", pa, cpu=cpu)
    if r.status.is_error:
        kt.kvm.warn_on(True, "TDH.PHYMEM.PAGE.RECLAIM failed", r.status,
                       f"rcx {r.rcx:#x}", f"rdx {r.rdx:#x}", f"r8 {r.r8:#x}")
        if "reclaim-failure-frees-page" in kt.mutations:  # mutant: as if it had worked
            return True
        kt.leak(pa, f"RECLAIM failed: {r.status}")
        return False
    if kt.host.pamt is not None:
        kt.reclaim_hints[pa] = r.pamt_removal_hint
    return True


# --- vCPU run loop pieces ---------------------------------------------------------------

def tdx_vcpu_enter(vcpu: KvmVcpu, cpu: int):
    """`vcpu_enter_guest` -> `tdx_vcpu_run`: mode = IN_GUEST_MODE, then TDH.VP.ENTER unless
    `wait_for_sept_zap` keeps vCPUs out (then "exit handled": Yan Zhao's patch [Y4], merged
    in 6.16).
    Returns the VP.ENTER result, or None when the entry was skipped."""
    kt, vt = to_kvm_tdx(vcpu.kvm), vcpu.arch.tdx
    yield from tdx_vcpu_load(vcpu, cpu)
    if kt.host.pending_ipis[cpu]:
        yield WaitUntil(lambda: not kt.host.pending_ipis[cpu], f"IPI handler on cpu{cpu}")
    vcpu.mode = IN_GUEST_MODE
    vcpu.kicked = False
    if kt.wait_for_sept_zap or vcpu.kvm.vm_dead:
        vcpu.mode = OUTSIDE_GUEST_MODE
        yield PREEMPT
        return None
    # VP.ENTER always runs stepwise: its 0-step check holds the S-EPT tree mid-call.
    yield PREEMPT
    vt.guest_lp = cpu
    r = yield from kt.module.stepwise("tdh_vp_enter", vt.tdvpr_pa, lp=cpu)
    if r.status.is_error or r.exit_reason:
        vcpu.mode = OUTSIDE_GUEST_MODE  # BUSY from VP.ENTER is "exit handled" (fastpath)
    return r


def tdx_vcpu_exit(vcpu: KvmVcpu, reason: str = "EXTERNAL_INTERRUPT", gpa: int = 0,
                  progressed: bool = True):
    """The TD exit: the vCPU leaves guest mode (acknowledging any IPI). It returns on the
    LP it entered on, even if a flush IPI that ran before the entry set `vcpu->cpu = -1`
    (`tdx_flush_vp` [K616]; the v19 HKID release can do that, [SC-Apr24])."""
    kt, vt = to_kvm_tdx(vcpu.kvm), vcpu.arch.tdx
    yield PREEMPT
    lp = vt.guest_lp if vt.guest_lp != -1 else vcpu.cpu
    r = kt.module.td_exit(vt.tdvpr_pa, reason, gpa, progressed, lp=lp)
    vcpu.mode = OUTSIDE_GUEST_MODE
    vcpu.kicked = False
    return r
