"""One list of what counts as an alarm, for every checker (`tdxedu check-mutants`, the
explorer's scenarios, the fuzzers): every condition a world reports is either an *alarm* (a
bug the kernel or the module would show: a KVM_BUG_ON, a WARN, a leak, a failed entry) or a
*fact* (a description of correct behaviour, such as "a root was freed").

`tests/mutants/test_alarm_list.py` builds every registered scenario and every check-mutants
factory and fails when a world reports a condition that is in neither table, so a new
condition cannot be forgotten. Outcomes: a run that ends ``invariant_violated`` or in a
``deadlock`` (the hung-task detector) is an alarm; ``exception`` and ``step_bound`` are
alarms on a correct policy too, but they are defects of the model, never a *named* catch.
"""

from __future__ import annotations

#: conditions that are bugs when they hold, with the check that names them
ALARMS: dict[str, str] = {
    "kvm_bug": "a KVM_BUG_ON fired (the VM is bugged and dead)",
    "hkid_leaked": "the HKID was never freed (KVM's 'HKID %d is leaked' path)",
    "pages_leaked": "KVM gave up on a page (a failed removal or reclaim)",
    "vp_enter_failed": "TDH.VP.ENTER returned an error KVM does not handle",
    "vp_enter_vcpu_associated": "TDH.VP.ENTER found the vCPU associated with another LP",
    "entered_after_vm_dead": "a vCPU entered the guest after kvm_vm_dead()",
    "host_pages_leaked": "host pages still allocated after kvm_destroy_vm",
    "pamt_refs_left": "Dynamic PAMT references left after kvm_destroy_vm",
    "pamt_pairs_left": "Dynamic PAMT page pairs left in the module after kvm_destroy_vm",
    "kvm_warn": "a WARN_ON_ONCE in KVM's TDX code fired (the VM keeps running)",
    "pamt_warn": "a Dynamic PAMT WARN fired (put at refcount 0, PAMT.REMOVE failed)",
    "pair_lost": "a page was used while its 2 MB range had no PAMT page pair",
    "pair_leaked": "a PAMT page pair is installed with no reference, or its pages are gone",
    "get_failed": "tdx_pamt_get returned an error",
    "refcount_nonzero": "PAMT refcounts not back to 0 when every get was put",
    "fast_zap_left_sptes": "fast zap returned with SPTEs in a root it invalidated (inv9)",
    "tdp_mmu_warn": "a WARN_ON of tdp_mmu.c fired (pages or roots left at uninit, ...)",
    "softlockup": "the soft-lockup watchdog: a zap spinning on BUSY with mmu_lock held",
    "seamcall_leaked": "an injected SEAMCALL failure left a page, HKID or pair unaccounted",
}

#: conditions that describe correct behaviour (never alarms)
FACTS: dict[str, str] = {
    "busy": "a PAMT.ADD/REMOVE saw TDX_OPERAND_BUSY (handled)",
    "flushed_before_migrating": "vCPU 0 was flushed before it moved to another pCPU",
    "all_roots_freed": "every TDP MMU root was freed",
    "root_freed": "at least one TDP MMU root was freed",
    "root_reallocated": "a role was allocated again after its root died (the 2023 storm)",
    "resurrected_under_read_lock": "v6.3 resurrected a root under the read lock",
    "invalid_root_outlived_fast_zap": "an invalid, zapped root was still referenced",
    "tdp_mmu_pages_zero": "no non-root page table is left",
    "offline_refused": "tdx_offline_cpu refused to offline a package's last CPU (-EBUSY)",
    "aug_busy_seen": "PAGE.AUG returned TDX_OPERAND_BUSY on the fault path (retried)",
}

#: run outcomes (tdxedu.sim.engine.OUTCOMES) and whether each is a named check
NAMED_OUTCOMES = ("invariant_violated", "deadlock")
MODEL_DEFECTS = ("exception", "step_bound")

__all__ = ["ALARMS", "FACTS", "NAMED_OUTCOMES", "MODEL_DEFECTS"]
