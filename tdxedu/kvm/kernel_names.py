"""Kernel function names x kernel versions: which names the model may show under which label.

Traces, call chains ("issued by kvm_gmem_release -> tdx_sept_remove_private_spte"), status
lines, "why?" texts and lessons name kernel functions. A name shown under a version label must
exist in that kernel: 6.16's zap path calls `tdx_no_vcpus_enter_start`, 6.19's calls
`tdh_do_no_vcpus`. `NAMES` says, for every kernel function (or kernel macro) the model names,
in which upstream kernels it exists and where to read it; names that only a never-merged
series has carry that series' label instead. `MODEL_NAMES` lists the model's own helpers and
scenario actors that appear in call chains: they are not kernel functions and say which
kernel code they stand for.

A run's labels: its kernel (`KvmTdx.kernel`, "v6.16" or "v6.19") plus every series it runs
(`series_of(kt)`: a never-merged teardown policy, Dynamic PAMT). `exists(name, labels)` is
what tests/kvm/test_kernel_names.py checks for every name every flow shows.
"""

from __future__ import annotations

from dataclasses import dataclass

UPSTREAM = ("v6.16", "v6.19")
SERIES = ("terminate-vm", "v19-notifier", "flush-at-vcpu-free", "dpamt")
BOTH = frozenset(UPSTREAM)
ONLY_616 = frozenset({"v6.16"})
ONLY_619 = frozenset({"v6.19"})


@dataclass(frozen=True)
class KernelName:
    name: str
    labels: frozenset  # upstream versions and/or series labels in which the name exists
    source: str  # [TAG]s where it can be read
    file: str = "arch/x86/kvm/vmx/tdx.c"


def _n(name, labels, source, file="arch/x86/kvm/vmx/tdx.c") -> KernelName:
    return KernelName(name, frozenset(labels), source, file)


_TDX = "[K616-TDX] [K619-TDX]"
_ENTRIES = (
    # --- KVM's TDX code, both kernels ---------------------------------------------------------
    *(
        _n(f, BOTH, _TDX)
        for f in (
            "tdx_td_init",
            "__tdx_td_init",
            "tdx_do_tdh_mng_key_config",
            "tdx_vcpu_create",
            "tdx_vcpu_init",
            "tdx_td_vcpu_init",
            "tdx_vcpu_init_mem_region",
            "tdx_gmem_post_populate",
            "tdx_td_finalize",
            "tdx_vcpu_load",
            "tdx_vcpu_run",
            "tdx_handle_ept_violation",
            "tdx_sept_set_private_spte",
            "tdx_mem_page_aug",
            "tdx_sept_link_private_spt",
            "tdx_sept_remove_private_spte",
            "tdx_track",
            "tdx_sept_free_private_spt",
            "tdx_flush_vp",
            "tdx_flush_vp_on_cpu",
            "tdx_mmu_release_hkid",
            "smp_func_do_phymem_cache_wb",
            "tdx_vcpu_free",
            "tdx_reclaim_page",
            "tdx_reclaim_control_page",
            "tdx_reclaim_td_control_pages",
            "tdx_vm_destroy",
            "tdx_disassociate_vp",
        )
    ),
    # --- renamed or folded between 6.16 and 6.19 ----------------------------------------------
    _n(
        "tdx_sept_zap_private_spte",
        ONLY_616,
        "[K616-TDX]; folded into tdx_sept_remove_private_spte for 6.19 [S0]",
    ),
    _n(
        "tdx_sept_drop_private_spte",
        ONLY_616,
        "[K616-TDX]; folded into tdx_sept_remove_private_spte for 6.19 [S0]",
    ),
    _n("tdx_no_vcpus_enter_start", ONLY_616, "[K616-TDX] [Y4]; replaced by tdh_do_no_vcpus [S20]"),
    _n("tdx_no_vcpus_enter_stop", ONLY_616, "[K616-TDX] [Y4]; replaced by tdh_do_no_vcpus [S20]"),
    _n("tdh_do_no_vcpus", ONLY_619, "[S20] [K619-TDX]"),
    _n("tdx_clear_page", ONLY_616, "[K616-TDX]; tdx_quirk_reset_page from 6.18 [AH-clear]"),
    _n(
        "tdx_quirk_reset_page",
        ONLY_619,
        "[AH-clear] [PULL618] [K619-TDX]",
        "arch/x86/virt/vmx/tdx/tdx.c",
    ),
    _n("tdx_mem_page_add", ONLY_619, "[S0] [K619-TDX]"),
    _n("TDX_BUG_ON", ONLY_619, "[S17] [K619-TDX]"),
    # --- generic KVM and kernel code both kernels have ----------------------------------------
    *(
        _n(f, BOTH, "[LINUX-6.16] [LINUX-6.19]", "virt/kvm/kvm_main.c")
        for f in (
            "kvm_put_kvm",
            "kvm_destroy_vm",
            "kvm_make_all_cpus_request",
            "kvm_vm_dead",
            "kvm_mmu_notifier_release",
            "kvm_set_memslot",
        )
    ),
    _n("kvm_gmem_release", BOTH, "[LINUX-6.16] [LINUX-6.19]", "virt/kvm/guest_memfd.c"),
    _n("vcpu_enter_guest", BOTH, "[LINUX-6.16] [LINUX-6.19]", "arch/x86/kvm/x86.c"),
    _n("smp_call_function_single", BOTH, "[LINUX-6.16] [LINUX-6.19]", "kernel/smp.c"),
    *(
        _n(f, BOTH, "[LINUX-6.16] [LINUX-6.19]", "include/linux/rwlock.h, kernel/locking/mutex.c")
        for f in (
            "read_lock",
            "read_unlock",
            "write_lock",
            "write_unlock",
            "mutex_lock",
            "mutex_unlock",
        )
    ),
    # The TDP MMU (mirror roots of a TD) and the kernel around it, both kernels.
    *(
        _n(f, BOTH, "[LINUX-6.16] [LINUX-6.19]", "arch/x86/kvm/mmu/tdp_mmu.c, mmu.c")
        for f in (
            "kvm_tdp_mmu_map",
            "kvm_tdp_mmu_put_root",
            "kvm_tdp_mmu_invalidate_roots",
            "kvm_tdp_mmu_zap_invalidated_roots",
            "kvm_tdp_mmu_unmap_gfn_range",
            "kvm_mmu_uninit_tdp_mmu",
            "kvm_mmu_unload",
            "tdp_mmu_zap_root",
            "tdp_mmu_free_sp_rcu_callback",
            "remove_external_spte",
            "free_external_spt",
        )
    ),
    _n("call_rcu", BOTH, "[LINUX-6.16] [LINUX-6.19]", "kernel/rcu/tree.c"),
    _n("cpu_down", BOTH, "[LINUX-6.16] [LINUX-6.19]", "kernel/cpu.c"),
    _n("pr_warn_ratelimited", BOTH, "[LINUX-6.16] [LINUX-6.19]", "include/linux/printk.h"),
    _n("KVM_BUG_ON", BOTH, "[LINUX-6.16] [LINUX-6.19]", "include/linux/kvm_host.h"),
    _n("WARN", BOTH, "[LINUX-6.16] [LINUX-6.19]", "include/asm-generic/bug.h"),
    # --- never-merged series -------------------------------------------------------------------
    _n("tdx_terminate_vm", {"terminate-vm"}, "[TERM-V5]"),
    *(
        _n(f, {"dpamt"}, "[V6-03] [V6-05] [V6-06] [V6-09]", "arch/x86/virt/vmx/tdx/tdx.c")
        for f in (
            "tdx_pamt_get",
            "tdx_pamt_put",
            "tdx_alloc_control_page",
            "tdx_free_control_page",
            "tdx_topup_pamt_cache",
        )
    ),
)
NAMES: dict[str, KernelName] = {e.name: e for e in _ENTRIES}

# The model's own helpers and scenario actors that show up in call chains and traces: not
# kernel functions; each says what it stands for.
MODEL_NAMES: dict[str, str] = {
    "tdx_map_private_gfn": "the private half of kvm_tdp_mmu_map: tdx_sept_link_private_spt "
    "and tdx_sept_set_private_spte",
    "tdx_init_mem_region": "KVM_TDX_INIT_MEM_REGION for one page: tdx_vcpu_init_mem_region -> "
    "tdx_gmem_post_populate",
    "tdx_vcpu_enter": "vcpu_enter_guest -> tdx_vcpu_run up to TDH.VP.ENTER",
    "tdx_vcpu_exit": "the TD exit TDH.VP.ENTER returns with",
    "dpamt_get_guest_page": "the Dynamic PAMT hook before PAGE.AUG / PAGE.ADD (tdx_pamt_get)",
    "dpamt_put_guest_page": "the Dynamic PAMT hook after a removal (tdx_pamt_put)",
    "dpamt_alloc_sept_page": "an S-EPT page with its PAMT reference",
    "dpamt_free_sept_page": "an S-EPT page's tdx_free_control_page",
    "handle_private_fault": "tdx_handle_ept_violation's local retry loop",
    "zap_private": "a runtime zap of one private page (a private->shared conversion)",
    "thp_collapse": "khugepaged moving a guest_memfd folio (the gmem-prepare objection)",
    "hkid_leaked": "tdx_mmu_release_hkid leaving the HKID assigned (TDX_FLUSHVP_NOT_DONE)",
    "pr_tdx_error": "KVM's SEAMCALL error print",
    "vm_entry": "a vCPU entering the guest (the TDP MMU worlds)",
    "BUG": "the soft-lockup watchdog's 'BUG: soft lockup' report (kernel/watchdog.c)",
    "might_sleep": "the might_sleep() splat (kernel/sched/core.c __might_sleep)",
}
# Actor generators of the explorer scenarios (tdxedu.scenarios): named after what they play.
MODEL_NAMES.update(
    {
        a: "a scenario actor"
        for a in (
            "closer",
            "cpu",
            "destroy",
            "enter_once",
            "late_vcpu",
            "migrating",
            "mm",
            "vcpu",
            "vcpu_script",
            "vcpu_thread",
            "gmem",
            "terminate",
            "runner",
            "faulter",
            "zapper",
            "hotplug",
            "close",
            "build",
            "fault",
            "zero_step_vcpu",
            "map_external",
        )
    }
)


def series_of(kt) -> frozenset:
    """The never-merged series a VM runs: its teardown policy unless "v6.16", Dynamic PAMT."""
    out = set()
    if kt.teardown_policy in SERIES:
        out.add(kt.teardown_policy)
    if kt.host.pamt is not None:
        out.add("dpamt")
    return frozenset(out)


def labels_of(kt) -> frozenset:
    """Every label a VM's names may come from: its kernel and its series."""
    return frozenset({kt.kernel}) | series_of(kt)


def exists(name: str, labels) -> bool:
    """True when `name` is a kernel name under one of `labels`, or a declared model name."""
    if name in MODEL_NAMES:
        return True
    entry = NAMES.get(name)
    return entry is not None and bool(entry.labels & set(labels))


def versions(name: str) -> frozenset:
    """The labels under which `name` exists (empty for a model name or an unknown one)."""
    entry = NAMES.get(name)
    return entry.labels if entry else frozenset()


__all__ = [
    "KernelName",
    "NAMES",
    "MODEL_NAMES",
    "UPSTREAM",
    "SERIES",
    "exists",
    "versions",
    "labels_of",
    "series_of",
]
