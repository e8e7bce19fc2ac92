"""Per-CPU associated-vCPU lists, CPU offline and two packages (`tdx_vcpu_load`,
`tdx_flush_vp_on_cpu`, `tdx_offline_cpu`, `tdx_disable_virtualization_cpu`,
`tdx_mmu_release_hkid`'s CACHE.WB mask): [K616], [M15]. Caught by the host invariants
``assoc-list`` and ``assoc-offline`` (`tdxedu.kvm.host.Host.check_invariants`) or by the
KVM_BUG_ON "HKID is leaked"."""

from . import Mutant, mutations

FAMILY = "vcpu"

MUTANTS = [
    Mutant(
        "offline-skips-flush",
        "CPU offline disables virtualization without walking the CPU's associated_tdvcpus "
        "list: its vCPUs stay associated with a CPU no IPI can reach",
        "[K616] tdx_disable_virtualization_cpu (TDH.VP.FLUSH + tdx_disassociate_vp for each "
        "vCPU on the list); invariant assoc-offline",
        ("cpu-offline",), "invariant:assoc-offline", mutations("offline-skips-flush")),
    Mutant(
        "offline-last-package-cpu",
        "tdx_offline_cpu lets the last online CPU of a package go while a KeyID is allocated: "
        "CACHE.WB can no longer run on that package, so no KeyID can be freed",
        "[K616] tdx_offline_cpu ('TDX requires all packages to have an online CPU'); [M15] "
        "tdh_mng_key_freeid.c (TDX_WBCACHE_NOT_COMPLETE); invariant assoc-offline",
        ("cpu-offline-2pkg",), "invariant:assoc-offline",
        mutations("offline-last-package-cpu")),
    Mutant(
        "vp-flush-on-calling-cpu",
        "tdx_flush_vp_on_cpu runs TDH.VP.FLUSH on the calling CPU instead of by IPI on "
        "vcpu->cpu: TDX_VCPU_NOT_ASSOCIATED is tolerated, the vCPU leaves the kernel's list "
        "but stays associated in the module",
        "[K616] tdx_flush_vp_on_cpu (smp_call_function_single(vcpu->cpu, tdx_flush_vp)); "
        "[M15] tdh_vp_flush.c (only the associated LP may flush); invariant assoc-list",
        ("teardown-2pkg",), "invariant:assoc-list", mutations("vp-flush-on-calling-cpu")),
]
