"""The per-page removal path (`tdx_sept_remove_private_spte`, `tdx_track`,
`tdh_do_no_vcpus`): reference/contention.md §5, §6 and teardown.md §1.2 Stage C."""

from . import Mutant, mutations

MUTANTS = [
    Mutant(
        "skip-track",
        "REMOVE right after BLOCK, without TDH.MEM.TRACK and the IPI to every vCPU",
        "contention.md §5 (tracked test: BEPOCH < TD_EPOCH-1, TLB_TRACKING_NOT_DONE); "
        "[K616] tdx_sept_remove_private_spte step 2 (tdx_track)",
        ("zap-running", "zap-accept"), "kvm_bug", mutations("skip-track")),
    Mutant(
        "track-no-ipi-wait",
        "tdx_track kicks the vCPUs but does not wait for their acknowledgement",
        "contention.md §5 'KVM side' item 2: KVM_REQ_OUTSIDE_GUEST_MODE has WAIT semantics so "
        "no vCPU still runs in the block epoch; [K616] tdx_track comment",
        ("zap-running", "zap-accept"), "kvm_bug", mutations("track-no-ipi-wait")),
    Mutant(
        "no-wbinvd-after-remove",
        "no TDH.PHYMEM.PAGE.WBINVD(HKID) after PAGE.REMOVE: the page goes back to the host "
        "with dirty private cache lines",
        "teardown.md §1.2 Stage C step 4, §3.3 (TDH.PHYMEM.PAGE.WBINVD); "
        "[K616] tdx_sept_remove_private_spte -> tdh_phymem_page_wbinvd_hkid",
        ("teardown",), "invariant:dirty cache lines", mutations("no-wbinvd-after-remove")),
    Mutant(
        "no-retry",
        "any TDX_OPERAND_BUSY on BLOCK/TRACK/REMOVE is a KVM_BUG_ON (no kick, no retry)",
        "contention.md §3 (ACCEPT and 0-step VP.ENTER contend with BLOCK/REMOVE), §6 item 2 "
        "([Y4] 'Kick off vCPUs when SEAMCALL is busy during TD page removal')",
        ("zap-accept", "zap-zero-step"), "kvm_bug", {"busy_policy": "no-retry"}),
    Mutant(
        "retry-loop-no-kick",
        "pre-merge loop-while-BUSY without kicking vCPUs: under sustained 0-step re-entry "
        "the zap can spin without bound",
        "contention.md §6 item 1 (out-of-tree do-while loops, '[HACK] KVM: TDX: Retry seamcall "
        "when TDX_OPERAND_BUSY'), §3.1 (0-step takes the tree exclusively)",
        ("zap-zero-step",), "step_bound", {"busy_policy": "retry-loop"}),
    Mutant(
        "forget-wait-for-sept-zap",
        "kick-retry-once without setting wait_for_sept_zap: kicked vCPUs re-enter before the "
        "retry and the retry is BUSY again",
        "contention.md §6 item 3 (tdx_no_vcpus_enter_start sets wait_for_sept_zap; "
        "tdx_vcpu_run returns 'exit handled' while it is set); [S20] tdh_do_no_vcpus",
        ("zap-zero-step-2",), "kvm_bug", mutations("forget-wait-for-sept-zap")),
]
