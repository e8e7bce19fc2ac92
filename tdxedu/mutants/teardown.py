"""HKID release and reclaim order (`tdx_mmu_release_hkid`, `kvm_destroy_vm`,
`tdx_vm_destroy`, KVM_TDX_TERMINATE_VM): [K616], [M15], [RE-P2], [SC-Mar25], [TERM-V5]."""

from . import Mutant, mutations

MUTANTS = [
    Mutant(
        "skip-vpflushdone",
        "free the HKID (CACHE.WB, KEY.FREEID) without TDH.MNG.VPFLUSHDONE first",
        "[K616] tdx_mmu_release_hkid (VPFLUSHDONE, CACHE.WB, KEY.FREEID in that order); "
        "[M15] tdh_mng_key_freeid.c (needs TD_BLOCKED, which only VPFLUSHDONE sets, else "
        "TDX_LIFECYCLE_STATE_INCORRECT)",
        ("teardown",), "hkid_leaked", mutations("skip-vpflushdone")),
    Mutant(
        "skip-cache-wb",
        "TDH.MNG.KEY.FREEID without TDH.PHYMEM.CACHE.WB on every package",
        "[K616] tdx_mmu_release_hkid (CACHE.WB on one CPU per package); [M15] "
        "tdh_mng_key_freeid.c (a package left in wbinvd_bitmap -> TDX_WBCACHE_NOT_COMPLETE)",
        ("teardown",), "hkid_leaked", mutations("skip-cache-wb")),
    Mutant(
        "no-vp-flush-at-hkid-release",
        "release the HKID while vCPUs are still associated (no TDH.VP.FLUSH round)",
        "[K616] tdx_mmu_release_hkid (TDH.VP.FLUSH of every vCPU first); [M15] "
        "tdh_mng_vpflushdone.c (a vCPU still associated -> TDX_FLUSHVP_NOT_DONE, HKID leaked)",
        ("teardown", "hkid-release"), "hkid_leaked",
        mutations("no-vp-flush-at-hkid-release")),
    Mutant(
        "v19-notifier",
        "release the HKID from the MMU-notifier release path (the 2024 v19 race: a vCPU is "
        "loaded and entered again afterwards)",
        "[K-Mar24] [SC-Apr24] (the v19 thread: release from the MMU-notifier path); Sean's "
        "verdict, quoted in [AH-RFC]: 'the right answer is to not release the HKID until the VM "
        "is destroyed'",
        ("hkid-release",), "kvm_bug", {"teardown_policy": "v19-notifier"}),
    Mutant(
        "vm-destroy-before-mmu-uninit",
        "reclaim the TDR before its children: vm_destroy (TDCS + TDR) runs before "
        "kvm_mmu_uninit_vm frees the S-EPT pages",
        "[PB-vmdestroy] 'TDX needs to free the TDR control structures last, after all paging "
        "structures have been torn down'; [M15] tdh_phymem_page_reclaim.c (RECLAIM of a TDR "
        "with children -> TDX_TD_ASSOCIATED_PAGES_EXIST)",
        ("teardown",), "pages_leaked", mutations("vm-destroy-before-mmu-uninit")),
    Mutant(
        "sept-free-before-hkid-release",
        "reclaim S-EPT page-table pages with the HKID still assigned (kvm_mmu_uninit_vm before "
        "vm_pre_destroy)",
        "[K616] (tdx_sept_free_private_spt KVM_BUG_ONs while the HKID is assigned); "
        "[RE-P2]: private page tables are reclaimed only after the HKID is",
        ("teardown",), "kvm_bug", mutations("sept-free-before-hkid-release")),
    Mutant(
        "terminate-without-vm-dead",
        "KVM_TDX_TERMINATE_VM releases the HKID without kvm_vm_dead(): the remove hook then "
        "sees a live VM with no HKID",
        "[SC-Mar25] (mark the VM dead, then __tdx_release_hkid); [TERM-V5] (the remove hook "
        "KVM_BUG_ONs on a missing HKID unless the VM is dead)",
        ("teardown",), "kvm_bug",
        {"teardown_policy": "terminate-vm", **mutations("terminate-without-vm-dead")}),
]
