"""HKID release and reclaim order (`tdx_mmu_release_hkid`, `kvm_destroy_vm`,
`tdx_vm_destroy`, KVM_TDX_TERMINATE_VM): reference/teardown.md §1.2, §1.3, §2, §3.3, §5.3."""

from . import Mutant, mutations

MUTANTS = [
    Mutant(
        "skip-vpflushdone",
        "free the HKID (CACHE.WB, KEY.FREEID) without TDH.MNG.VPFLUSHDONE first",
        "teardown.md §1.2 D1 steps 4-6, §3.3 (KEY.FREEID needs TD_BLOCKED, set only by "
        "VPFLUSHDONE -> TDX_LIFECYCLE_STATE_INCORRECT)",
        ("teardown",), "hkid_leaked", mutations("skip-vpflushdone")),
    Mutant(
        "skip-cache-wb",
        "TDH.MNG.KEY.FREEID without TDH.PHYMEM.CACHE.WB on every package",
        "teardown.md §1.2 D1 step 5, §3.3 (FREEID: wbinvd_bitmap != 0 -> "
        "TDX_WBCACHE_NOT_COMPLETE)",
        ("teardown",), "hkid_leaked", mutations("skip-cache-wb")),
    Mutant(
        "no-vp-flush-at-hkid-release",
        "release the HKID while vCPUs are still associated (no TDH.VP.FLUSH round)",
        "teardown.md §1.2 D1 step 2, §5.3 (VPFLUSHDONE -> TDX_FLUSHVP_NOT_DONE, HKID leaked)",
        ("teardown", "hkid-release"), "hkid_leaked",
        mutations("no-vp-flush-at-hkid-release")),
    Mutant(
        "v19-notifier",
        "release the HKID from the MMU-notifier release path (the 2024 v19 race: a vCPU is "
        "loaded and entered again afterwards)",
        "teardown.md §1.2 Stage B, §5.3 [K-Mar24] [SC-Apr24]: Sean: 'the right answer is to "
        "not release the HKID until the VM is destroyed'",
        ("hkid-release",), "kvm_bug", {"teardown_policy": "v19-notifier"}),
    Mutant(
        "vm-destroy-before-mmu-uninit",
        "reclaim the TDR before its children: vm_destroy (TDCS + TDR) runs before "
        "kvm_mmu_uninit_vm frees the S-EPT pages",
        "teardown.md §1.1 [PB-vmdestroy] 'TDX needs to free the TDR control structures last, "
        "after all paging structures have been torn down'; §3.3 RECLAIM(TDR) with chldcnt != 0 "
        "-> TDX_TD_ASSOCIATED_PAGES_EXIST",
        ("teardown",), "pages_leaked", mutations("vm-destroy-before-mmu-uninit")),
    Mutant(
        "sept-free-before-hkid-release",
        "reclaim S-EPT page-table pages with the HKID still assigned (kvm_mmu_uninit_vm before "
        "vm_pre_destroy)",
        "teardown.md §1.2 D3 (tdx_sept_free_private_spt KVM_BUG_ONs while the HKID is "
        "assigned), §1.3 [RE-P2] 'page tables are reclaimed after HKID reclaim'",
        ("teardown",), "kvm_bug", mutations("sept-free-before-hkid-release")),
    Mutant(
        "terminate-without-vm-dead",
        "KVM_TDX_TERMINATE_VM releases the HKID without kvm_vm_dead(): the remove hook then "
        "sees a live VM with no HKID",
        "teardown.md §2.2 [SC-Mar25] (mark the VM dead, then __tdx_release_hkid), §2.3 [V5] "
        "(remove hook: KVM_BUG_ON unless vm_dead)",
        ("teardown",), "kvm_bug",
        {"teardown_policy": "terminate-vm", **mutations("terminate-without-vm-dead")}),
]
