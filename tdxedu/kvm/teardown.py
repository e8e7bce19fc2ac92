"""Tearing a TD down: HKID release, vCPU free, S-EPT and control-page reclaim, and the
orderings that were proposed for it, as named policies on one code path.

* ``"v6.16"`` (upstream, [K616] [RE-P2]): private memory is removed the runtime way when
  each guest_memfd closes; the HKID is released at `vm_pre_destroy`; then vCPUs, S-EPT pages
  and control pages are reclaimed in TD_TEARDOWN.
* ``"terminate-vm"`` (KVM_TDX_TERMINATE_VM, [SC-Mar25] [TERM-V5]; dropped from the 6.17 pull,
  [PULL617], and not merged since): lock all vCPUs,
  mark the VM dead, release the HKID early (mmu_lock held for write across CACHE.WB and
  FREEID); every private page is then reclaimed with PAGE.RECLAIM.
* ``"v19-notifier"`` (2024 v19 series, [K-Mar24] [SC-Apr24]): the HKID is released from the
  MMU-notifier release path, while a vCPU may still be loaded and entered again.
* ``"flush-at-vcpu-free"`` (Kai Huang's "normal way", [K-Mar24]): VP.FLUSH as each vCPU is
  destroyed, VPFLUSHDONE after all of them, the HKID released last, then reclaim.
"""

from __future__ import annotations

from ..tdx import status as st
from ..tdx.leaves import TDH_PHYMEM_CACHEWB_RESUME_CMD, TDH_PHYMEM_CACHEWB_START_CMD
from .kvm import Kvm, KvmVcpu
from .pamt import (
    dpamt_free_sept_page,
    tdx_free_control_page,
    tdx_pamt_cache_free,
    vcpu_pamt_cache,
)
from .tdp_mmu import kvm_mmu_destroy, kvm_mmu_uninit_tdp_mmu, kvm_tdp_mmu_unmap_gfn_range
from .tdx import (
    TD_STATE_UNINITIALIZED,
    TDX_SEAMCALL_RETRIES,
    VCPU_TD_STATE_INITIALIZED,
    VCPU_TD_STATE_UNINITIALIZED,
    KvmTdx,
    tdx_flush_vp_on_cpu,
    tdx_reclaim_page,
    tdx_sept_remove_private_spte,
    to_kvm_tdx,
)
from .tdx import __tdx_reclaim_page as reclaim_without_clear


def tdx_mmu_release_hkid(kvm: Kvm, cpu: int = 0, *, flush_vcpus: bool = True,
                         hold_mmu_lock: bool = False, who: str = "teardown"):
    """Release the TD's HKID as `tdx_mmu_release_hkid` does ([K616-TDX], same in 6.19):
    VP.FLUSH every vCPU on its CPU (a failure is a KVM_BUG_ON, the release goes on),
    VPFLUSHDONE, CACHE.WB on one CPU per package (resume while INTERRUPTED_RESUMABLE; a
    failure only WARNs), KEY.FREEID. TDX_FLUSHVP_NOT_DONE silently leaves the HKID assigned
    (leaked); any other VPFLUSHDONE or FREEID error is a KVM_BUG_ON "HKID %d is leaked"."""
    kt = to_kvm_tdx(kvm)
    if not kt.hkid_assigned:
        return
    if flush_vcpus and "no-vp-flush-at-hkid-release" not in kt.mutations:  # mutant
        flush = kvm.vcpus[:1] if "flush-first-vcpu-only" in kt.mutations else kvm.vcpus  # mutant
        for vcpu in flush:
            err = yield from tdx_flush_vp_on_cpu(vcpu)
            kvm.kvm_bug_on(err is not None, "TDH.VP.FLUSH failed", err)
    yield from kt.host.tdx_lock.lock(who)
    try:
        status = st.TDX_SUCCESS
        if "skip-vpflushdone" not in kt.mutations:  # mutant: FREEID without VPFLUSHDONE
            status = (yield from kt.sc("tdh_mng_vpflushdone", kt.tdr_pa, cpu=cpu)).status
        if status.matches(st.TDX_FLUSHVP_NOT_DONE):
            kt.hkid_leaked = True
            kt.emit("hkid_leaked", kt.hkid, status=status, cpu=cpu)
            return
        if kvm.kvm_bug_on(status.is_error, "HKID is leaked", kt.hkid, status):
            kt.hkid_leaked = True
            return
        if "keyid-free-before-freeid" in kt.mutations:  # mutant: pool gets it too early
            kt.host.tdx_guest_keyid_free(kt.hkid)
        if hold_mmu_lock:
            yield from kvm.mmu_lock.write_lock(who)
        try:
            for i, pkg_cpu in enumerate(kt.host.one_cpu_per_package()):
                if "skip-cache-wb" in kt.mutations:  # mutant: FREEID without CACHE.WB
                    break
                if i and "cache-wb-first-package-only" in kt.mutations:  # mutant
                    break
                err = yield from smp_func_do_phymem_cache_wb(kt, pkg_cpu)
                # smp_func_do_phymem_cache_wb: WARN_ON_ONCE (6.19: TDX_BUG_ON with no VM);
                # FREEID then finds the cache not written back.
                kvm.warn_on(err.is_error, "TDH.PHYMEM.CACHE.WB failed", err)
            r = yield from kt.sc("tdh_mng_key_freeid", kt.tdr_pa, cpu=cpu)
            if kvm.kvm_bug_on(r.status.is_error, "HKID is leaked", kt.hkid, r.status):
                kt.hkid_leaked = True
                return
            if not {"keyid-not-returned", "keyid-free-before-freeid"} & kt.mutations:  # mutant
                kt.host.tdx_guest_keyid_free(kt.hkid)  # tdx_hkid_free
            kt.hkid = -1
        finally:
            if hold_mmu_lock:
                kvm.mmu_lock.write_unlock(who)
    finally:
        kt.host.tdx_lock.unlock(who)


def smp_func_do_phymem_cache_wb(kt: KvmTdx, cpu: int):
    """CACHE.WB on one CPU, resumed while INTERRUPTED_RESUMABLE (up to 10000 times);
    TDX_NO_HKID_READY_TO_WBCACHE counts as done by another thread."""
    r = yield from kt.sc("tdh_phymem_cache_wb", TDH_PHYMEM_CACHEWB_START_CMD, cpu=cpu)
    tries = 0
    retries = 0 if "cache-wb-no-resume" in kt.mutations else TDX_SEAMCALL_RETRIES  # mutant
    while r.status.matches(st.TDX_INTERRUPTED_RESUMABLE) and tries < retries:
        r = yield from kt.sc("tdh_phymem_cache_wb", TDH_PHYMEM_CACHEWB_RESUME_CMD, cpu=cpu)
        tries += 1
    if r.status.matches(st.TDX_NO_HKID_READY_TO_WBCACHE):
        return st.TDX_SUCCESS
    return r.status


def tdx_vcpu_free(vcpu: KvmVcpu, cpu: int = 0, *, policy: str = "v6.16"):
    """`tdx_vcpu_free`: with the HKID still assigned the pages are leaked on purpose;
    otherwise RECLAIM each TDCX page, then the TDVPR ([K616]).
    "flush-at-vcpu-free" instead flushes the vCPU here and defers the reclaim."""
    kt, vt = to_kvm_tdx(vcpu.kvm), vcpu.arch.tdx
    if kt.host.pamt is not None:  # unused PAMT cache pages were never the module's [V6-09]
        tdx_pamt_cache_free(kt.host, vcpu_pamt_cache(vcpu))
    if policy == "flush-at-vcpu-free" and kt.hkid_assigned:
        err = yield from tdx_flush_vp_on_cpu(vcpu)
        vcpu.kvm.kvm_bug_on(err is not None, "TDH.VP.FLUSH failed", err)
        return
    if kt.hkid_assigned:
        for pa in [*vt.tdcx_pa, vt.tdvpr_pa]:
            kt.leak(pa, "vCPU page: HKID still assigned")
        vt.tdcx_pa, vt.tdvpr_pa = [], 0
        return
    yield from _reclaim_vcpu_pages(kt, vt, cpu)


def _reclaim_vcpu_pages(kt: KvmTdx, vt, cpu: int):
    for pa in vt.tdcx_pa:
        if (yield from tdx_reclaim_page(kt, pa, cpu)):
            yield from _free_control_page(kt, pa, cpu)
    vt.tdcx_pa = []
    if vt.tdvpr_pa:
        if (yield from tdx_reclaim_page(kt, vt.tdvpr_pa, cpu)):
            yield from _free_control_page(kt, vt.tdvpr_pa, cpu)
        vt.tdvpr_pa = 0
    vt.state = VCPU_TD_STATE_UNINITIALIZED


def tdx_sept_free_private_spt(kt: KvmTdx, key, cpu: int):
    """Free one S-EPT page-table page at `kvm_mmu_uninit_vm`: KVM_BUG_ON while the HKID is
    assigned (page leaked), else RECLAIM + clear + free ([K616])."""
    pa = kt.sept_pages.pop(key)
    if kt.kvm.kvm_bug_on(kt.hkid_assigned, "free a private S-EPT page with the HKID assigned"):
        kt.leak(pa, "S-EPT page: HKID still assigned")
        return
    if (yield from tdx_reclaim_page(kt, pa, cpu)):
        if kt.host.pamt is not None:
            yield from dpamt_free_sept_page(kt, pa, cpu, kt.reclaim_hints.pop(pa, False))
        else:
            kt.host.allocator.free_page(pa)


def _free_control_page(kt: KvmTdx, pa: int, cpu: int):
    """`tdx_free_control_page` after a successful reclaim (static PAMT: just free)."""
    if kt.host.pamt is None:
        kt.host.allocator.free_page(pa)
        return
    yield from tdx_free_control_page(kt.host, pa, cpu, kt.reclaim_hints.pop(pa, False))


def tdx_vm_destroy(kvm: Kvm, cpu: int = 0):
    """`tdx_vm_destroy` -> `tdx_reclaim_td_control_pages`: give up (leak) if the HKID is still
    assigned; else RECLAIM (+ clear) each TDCS page, then RECLAIM the TDR, WBINVD it with the
    global KeyID (the module may touch the TDR while reclaiming TDCS pages), and only then
    clear it ([K616])."""
    kt = to_kvm_tdx(kvm)
    if kt.hkid_assigned:
        for pa in [*kt.tdcs_pa, kt.tdr_pa]:
            kt.leak(pa, "control page: HKID still assigned")
        kt.tdcs_pa, kt.tdr_pa = [], 0
        return
    for pa in kt.tdcs_pa:
        if (yield from tdx_reclaim_page(kt, pa, cpu)):
            yield from _free_control_page(kt, pa, cpu)
    kt.tdcs_pa = []
    if kt.tdr_pa:
        ok = yield from reclaim_without_clear(kt, kt.tdr_pa, cpu)
        if ok:
            r = None
            if "tdr-no-wbinvd" not in kt.mutations:  # mutant: free the TDR unflushed
                r = yield from kt.sc("tdh_phymem_page_wbinvd_tdr", kt.tdr_pa, cpu=cpu)
            if r is not None and kvm.kvm_bug_on(r.status.is_error,
                                                "TDH.PHYMEM.PAGE.WBINVD failed", r.status):
                kt.leak(kt.tdr_pa, f"WBINVD(TDR) failed: {r.status}")
            else:
                kt.tdx_clear_page(kt.tdr_pa, cpu)
                yield from _free_control_page(kt, kt.tdr_pa, cpu)
        kt.tdr_pa = 0
    kt.state = TD_STATE_UNINITIALIZED


# --- the VM-level flow ---------------------------------------------------------------------

def kvm_gmem_release(kvm: Kvm, cpu: int = 0, who: str = "gmem"):
    """Closing the guest_memfd: zap every private leaf under mmu_lock held for write
    (`kvm_gmem_invalidate_begin` -> `remove_external_spte`), free the pages back to the
    host, then drop the file's VM reference ([K616], [AH-RFC])."""
    kt = to_kvm_tdx(kvm)
    shared = "gmem-zap-under-read-lock" in kt.mutations  # mutant: the fault path's lock mode
    yield from (kvm.mmu_lock.read_lock(who) if shared else kvm.mmu_lock.write_lock(who))
    try:
        if getattr(kvm.arch, "external_ops", None) is not None:  # through the TDP MMU
            yield from kvm_tdp_mmu_unmap_gfn_range(kvm, [gpa >> 12 for gpa in kt.mirror])
        else:
            for gpa in sorted(kt.mirror):
                yield from tdx_sept_remove_private_spte(kvm, gpa, cpu)
    finally:
        if shared:
            kvm.mmu_lock.read_unlock(who)
        else:
            kvm.mmu_lock.write_unlock(who)
    leaked = {pa for pa, _ in kt.leaked}
    for gpa, pa in sorted(kt.gmem.items()):
        if pa not in leaked and gpa not in kt.mirror:
            kt.host.allocator.free_page(pa)
            del kt.gmem[gpa]
    yield from kvm_put_kvm(kvm, cpu, who)


def kvm_mmu_notifier_release(kvm: Kvm, cpu: int = 0, who: str = "mm"):
    """The process's mm goes away. Upstream zaps only shared roots here: no SEAMCALL
    (mirror roots are skipped, [RE-mirror]). v19 released the HKID from here."""
    kt = to_kvm_tdx(kvm)
    kt.emit("kvm_mmu_notifier_release", cpu=cpu)
    if kt.teardown_policy == "v19-notifier":
        yield from tdx_mmu_release_hkid(kvm, cpu, who=who)


def tdx_terminate_vm(kvm: Kvm, cpu: int = 0, who: str = "terminate"):
    """KVM_TDX_TERMINATE_VM (v5): kvm->lock, trylock every vCPU (-EBUSY if one is busy),
    kvm_vm_dead, unlock, release the HKID with mmu_lock held for write around CACHE.WB and
    KEY.FREEID. Returns 0 or -EBUSY."""
    yield from kvm.lock.lock(who)
    try:
        locked = []
        for v in kvm.vcpus:
            if not v.mutex.trylock(who):
                for u in locked:
                    u.mutex.unlock(who)
                return -16  # -EBUSY
            locked.append(v)
        if "terminate-without-vm-dead" not in kvm.arch.tdx.mutations:  # mutant
            kvm.kvm_vm_dead()
        for u in locked:
            u.mutex.unlock(who)
        yield from tdx_mmu_release_hkid(kvm, cpu, hold_mmu_lock=True, who=who)
        return 0
    finally:
        kvm.lock.unlock(who)


def kvm_put_kvm(kvm: Kvm, cpu: int = 0, who: str = "close"):
    """Drop a VM reference; the last one runs `kvm_destroy_vm` in the caller."""
    if kvm.kvm_put_kvm():
        yield from kvm_destroy_vm(kvm, cpu, who)


def kvm_destroy_vm(kvm: Kvm, cpu: int = 0, who: str = "destroy"):
    """`kvm_destroy_vm` for a TD: pre_destroy (HKID release) -> destroy vCPUs ->
    `kvm_mmu_uninit_vm` (S-EPT pages) -> `vm_destroy` last ([SC-free], [PB-vmdestroy])."""
    kt = to_kvm_tdx(kvm)
    policy = kt.teardown_policy
    kt.emit("kvm_destroy_vm", policy, cpu=cpu)
    if "sept-free-before-hkid-release" in kt.mutations:  # mutant: kvm_mmu_uninit_vm first
        for key in sorted(kt.sept_pages, key=lambda k: (k[0], k[1])):
            yield from tdx_sept_free_private_spt(kt, key, cpu)
    if policy in ("v6.16", "terminate-vm"):
        yield from tdx_mmu_release_hkid(kvm, cpu, who=who)  # vm_pre_destroy
    tdp_mmu = getattr(kvm.arch, "external_ops", None) is not None
    for vcpu in kvm.vcpus:  # kvm_destroy_vcpus -> vcpu_free (and kvm_mmu_destroy)
        yield from tdx_vcpu_free(vcpu, cpu, policy=policy)
        if tdp_mmu:
            yield from kvm_mmu_destroy(vcpu)
    if policy == "flush-at-vcpu-free":
        yield from tdx_mmu_release_hkid(kvm, cpu, flush_vcpus=False, who=who)
        if not kt.hkid_assigned:
            for vcpu in kvm.vcpus:
                if vcpu.arch.tdx.state == VCPU_TD_STATE_INITIALIZED:
                    yield from _reclaim_vcpu_pages(kt, vcpu.arch.tdx, cpu)
        else:
            for vcpu in kvm.vcpus:
                yield from tdx_vcpu_free(vcpu, cpu)
    if "vm-destroy-before-mmu-uninit" in kt.mutations:  # mutant: pre-6.15 hook order
        yield from tdx_vm_destroy(kvm, cpu)
    if tdp_mmu:  # kvm_mmu_uninit_vm: the TDP MMU zaps the mirror root (free_external_spt)
        yield from kvm_mmu_uninit_tdp_mmu(kvm, who)
    for key in sorted(kt.sept_pages, key=lambda k: (k[0], k[1])):  # kvm_mmu_uninit_vm
        if tdp_mmu:  # what the TDP MMU did not free stays with the TD: leaked
            kt.leak(kt.sept_pages.pop(key), "S-EPT page never freed by the TDP MMU")
            continue
        yield from tdx_sept_free_private_spt(kt, key, cpu)
    yield from tdx_vm_destroy(kvm, cpu)
    kvm.destroyed = True
