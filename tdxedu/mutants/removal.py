"""The per-page removal path (`tdx_sept_remove_private_spte`, `tdx_track`,
`tdh_do_no_vcpus`): [K616], [M15], [Y4], [S20]."""

from . import Mutant, mutations

MUTANTS = [
    Mutant(
        "skip-track",
        "REMOVE right after BLOCK, without TDH.MEM.TRACK and the IPI to every vCPU",
        "[M15] tdh_mem_page_remove.c, is_tlb_tracked (an untracked block epoch -> "
        "TDX_TLB_TRACKING_NOT_DONE); [K616] tdx_sept_remove_private_spte calls tdx_track "
        "between BLOCK and REMOVE",
        ("zap-running", "zap-accept"), "kvm_bug", mutations("skip-track")),
    Mutant(
        "track-no-ipi-wait",
        "tdx_track kicks the vCPUs but does not wait for their acknowledgement",
        "[K616] tdx_track and its comment: KVM_REQ_OUTSIDE_GUEST_MODE waits for every vCPU "
        "to acknowledge, so none still runs in the block epoch",
        ("zap-running", "zap-accept"), "kvm_bug", mutations("track-no-ipi-wait")),
    Mutant(
        "track-kick-local-cpu-only",
        "tdx_track kicks only the vCPUs on the zapping pCPU: a vCPU running on another pCPU "
        "stays in the blocked epoch",
        "[K616] tdx_track (KVM_REQ_OUTSIDE_GUEST_MODE to every vCPU, waiting for all); [M15] "
        "tdh_mem_page_remove.c (TDX_TLB_TRACKING_NOT_DONE while a vCPU is in the old epoch)",
        ("zap-running", "zap-running-2"), "kvm_bug",
        mutations("track-kick-local-cpu-only")),
    Mutant(
        "track-kick-first-vcpu-only",
        "tdx_track's kick stops after the first vCPU in guest mode: with two vCPUs running, "
        "the second stays in the blocked epoch (one vCPU never shows it)",
        "[K616] tdx_track (KVM_REQ_OUTSIDE_GUEST_MODE to every vCPU, waiting for each); [M15] "
        "tdh_mem_page_remove.c (TDX_TLB_TRACKING_NOT_DONE)",
        ("zap-running", "zap-running-2"), "kvm_bug",
        mutations("track-kick-first-vcpu-only")),
    Mutant(
        "no-wbinvd-after-remove",
        "no TDH.PHYMEM.PAGE.WBINVD(HKID) after PAGE.REMOVE: the page goes back to the host "
        "with dirty private cache lines",
        "[K616] tdx_sept_remove_private_spte -> tdh_phymem_page_wbinvd_hkid; [M15] "
        "tdh_phymem_page_wbinvd.c",
        ("teardown",), "invariant:dirty cache lines", mutations("no-wbinvd-after-remove")),
    Mutant(
        "no-retry",
        "any TDX_OPERAND_BUSY on BLOCK/TRACK/REMOVE is a KVM_BUG_ON (no kick, no retry)",
        "[Y-RFC] (ACCEPT and 0-step VP.ENTER contend with BLOCK/REMOVE); [Y4] 'Kick off "
        "vCPUs when SEAMCALL is busy during TD page removal'",
        ("zap-accept", "zap-zero-step"), "kvm_bug", {"busy_policy": "no-retry"}),
    Mutant(
        "retry-loop-no-kick",
        "pre-merge loop-while-BUSY without kicking vCPUs: under sustained 0-step re-entry "
        "the zap can spin without bound",
        "[Y-RFC] (the out-of-tree do-while loops, a patch marked HACK: 'KVM: TDX: Retry "
        "seamcall when TDX_OPERAND_BUSY with operand SEPT'); [M15] td_exit_stepping.c (0-step "
        "mitigation takes the S-EPT tree exclusively)",
        ("zap-zero-step",), "softlockup", {"busy_policy": "retry-loop"}),
    Mutant(
        "forget-wait-for-sept-zap",
        "kick-retry-once without setting wait_for_sept_zap: kicked vCPUs re-enter before the "
        "retry and the retry is BUSY again",
        "[Y4] [K616] (tdx_no_vcpus_enter_start sets wait_for_sept_zap; tdx_vcpu_run returns "
        "'exit handled' while it is set); [S20] tdh_do_no_vcpus",
        ("zap-zero-step-2",), "kvm_bug", mutations("forget-wait-for-sept-zap")),
]
