"""Scenario factories for failure paths: a SEAMCALL failure injected at a KVM call site
(`tdxedu.tdx.fault_inject`, the kernel's fail_* framework in spirit), and what real hardware
varies (CACHE.WB interrupted several times on a two-package host, a vCPU loaded on a CPU but
never entered there when VP.FLUSH runs). Where the kernel's answer to the failure is itself a
KVM_BUG_ON and a page given up, those conditions are the factory's `reaction`: they must hold
in every run, and the alarms left are the named checks (a page freed while the module owns
it or with dirty lines, a page lost without being reported, ``seamcall_leaked``)."""

from __future__ import annotations

from ..kvm.tdx import tdx_flush_vp_on_cpu, tdx_vcpu_load
from ..tdx import status as st
from ..tdx.fault_inject import inject
from ..trace import WaitUntil, run_to_completion
from .scenarios import Config, TeardownWorld, factory


class FaultTeardownWorld(TeardownWorld):
    """A TD's teardown with one SEAMCALL failure armed: the `nth` call of `leaf` (counted from
    the start of the teardown) returns `status` without running."""

    def __init__(self, cfg: Config, leaf: str, status, nth: int = 1, **kw):
        super().__init__(cfg.teardown_policy, **kw)
        self.fault = inject(self.module, leaf, status, nth=nth)

    def fingerprint(self):
        return (super().fingerprint(), self.fault.calls)


def _mutate(w, cfg: Config):
    w.kt.mutations = set(cfg.mutations)
    return w


@factory("teardown-fault-remove", "teardown; the first TDH.MEM.PAGE.REMOVE fails "
         "(TDX_EPT_ENTRY_STATE_INCORRECT): KVM_BUG_ON, the page leaked",
         reaction=("kvm_bug", "kvm_warn", "pages_leaked", "host_pages_leaked"))
def _teardown_fault_remove(cfg: Config):
    """[K616-TDX] tdx_sept_remove_private_spte: a failed REMOVE is a KVM_BUG_ON and the page
    is never given back (it is still the TD's); so the TDR's RECLAIM later meets
    TDX_TD_ASSOCIATED_PAGES_EXIST, a WARN, and the TDR is leaked too."""
    return _mutate(FaultTeardownWorld(cfg, "tdh_mem_page_remove",
                                      st.TDX_EPT_ENTRY_STATE_INCORRECT), cfg)


@factory("teardown-fault-wbinvd", "teardown; the first TDH.PHYMEM.PAGE.WBINVD fails: "
         "KVM_BUG_ON, the page leaked", reaction=("kvm_bug", "pages_leaked",
                                                   "host_pages_leaked"))
def _teardown_fault_wbinvd(cfg: Config):
    """[K616] tdx_sept_remove_private_spte: the page may hold dirty lines under the TD's
    KeyID, so a failed WBINVD(HKID) leaks it."""
    return _mutate(FaultTeardownWorld(cfg, "tdh_phymem_page_wbinvd",
                                      st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_RCX), cfg)


@factory("teardown-fault-reclaim", "teardown; the first TDH.PHYMEM.PAGE.RECLAIM fails: the "
         "page leaked (reported), the teardown goes on",
         reaction=("kvm_warn", "pages_leaked", "host_pages_leaked"))
def _teardown_fault_reclaim(cfg: Config):
    """[K616-TDX] tdx_reclaim_page: a WARN (WARN_ON_ONCE with the outputs printed) and the
    page is leaked; nothing else stops."""
    return _mutate(FaultTeardownWorld(cfg, "tdh_phymem_page_reclaim",
                                      st.TDX_PAGE_METADATA_INCORRECT), cfg)


@factory("teardown-cache-wb-interrupted", "teardown on a two-package host where CACHE.WB is "
         "interrupted twice on each package (resumed)", uses=("teardown_policy",))
def _teardown_cache_wb_interrupted(cfg: Config):
    """[K616] tdx_mmu_release_hkid: CACHE.WB on one CPU per package, resumed while
    TDX_INTERRUPTED_RESUMABLE; [M15] tdh_phymem_cache_wb.c (an interrupted round resumes)."""
    w = TeardownWorld(cfg.teardown_policy, vcpus=2, packages=2, cpus_per_package=1)
    w.module.cache_wb_rounds = 3  # two interruptions before each package's round completes
    return _mutate(w, cfg)


class LoadedNeverEnteredWorld(TeardownWorld):
    """vCPU 1 was flushed off its pCPU, then loaded on another (`tdx_vcpu_load`) but never
    entered: it is on that CPU's list, and the module has it associated nowhere. Teardown's
    VP.FLUSH on that CPU gets TDX_VCPU_NOT_ASSOCIATED, which KVM tolerates ([K616]
    tdx_flush_vp)."""

    def __init__(self, cfg: Config):
        super().__init__(cfg.teardown_policy, vcpus=2, cpus_per_package=3)
        v1 = self.kvm.vcpus[1]
        self.host.preempt = False
        run_to_completion(tdx_flush_vp_on_cpu(v1))
        run_to_completion(tdx_vcpu_load(v1, 2))
        self.host.preempt = True
        self.trace.events.clear()


@factory("teardown-loaded-never-entered", "teardown after vCPU 1 was loaded on a new pCPU "
         "but never entered there (VP.FLUSH: TDX_VCPU_NOT_ASSOCIATED)", uses=("teardown_policy",))
def _teardown_loaded_never_entered(cfg: Config):
    return _mutate(LoadedNeverEnteredWorld(cfg), cfg)


class AugBusyWorld(TeardownWorld):
    """vCPU 0 accepts a page KVM has not mapped yet: the EPT violation maps it with
    TDH.MEM.PAGE.AUG, whose first try meets TDX_OPERAND_BUSY (another CPU holds the S-EPT
    entry, e.g. a 0-step VP.ENTER); then the TD is torn down."""

    def __init__(self, cfg: Config):
        super().__init__(cfg.teardown_policy, pages=1)
        self.gpa = 1 << 21
        self.fault = inject(self.module, "tdh_mem_page_aug",
                            st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT)

    def fingerprint(self):
        return (super().fingerprint(), self.fault.calls)

    def actors(self):
        v = self.kvm.vcpus[0]

        def closer():
            yield WaitUntil(lambda: "vcpu0" in self.done or self.kvm.vm_dead, "vCPU 0 done")
            yield from self.td.teardown_steps(self.strategy)

        return {"vcpu0": self.vcpu_thread(v, [("accept", self.gpa)], v.cpu, "vcpu0"),
                "close": closer()}


@factory("fault-aug-busy", "a guest ACCEPT faults a page in; the first TDH.MEM.PAGE.AUG is "
         "BUSY (retried), then teardown", uses=("teardown_policy",))
def _fault_aug_busy(cfg: Config):
    """[Y0] [K616-TDX] tdx_mem_page_aug: BUSY is -EBUSY, the fault is retried
    (RET_PF_RETRY); any other error is a KVM_BUG_ON."""
    return _mutate(AugBusyWorld(cfg), cfg)
