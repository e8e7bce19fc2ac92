"""Unit tests of the TDP MMU root model (the source of each rule in each test)."""

import pytest

from tdxedu.kvm.kvm import KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, Kvm
from tdxedu.kvm.mmu_role import (
    BROKEN_POLICIES,
    KVM_DIRECT_ROOTS,
    KVM_INVALID_ROOTS,
    KVM_VALID_ROOTS,
    POLICIES,
    KvmMmuPageRole,
    tdp_mmu_policy,
)
from tdxedu.kvm.tdp_mmu import (
    TDP_MMU_HOLDER,
    WQ_HOLDER,
    kvm_destroy_vm,
    kvm_mmu_create,
    kvm_mmu_destroy,
    kvm_mmu_init_tdp_mmu,
    kvm_mmu_reset_context,
    kvm_mmu_unload,
    kvm_mmu_zap_all,
    kvm_set_memslot,
    kvm_smm_changed,
    kvm_tdp_mmu_get_root,
    kvm_tdp_mmu_invalidate_roots,
    kvm_tdp_mmu_map,
    kvm_tdp_mmu_zap_invalidated_roots,
    rcu_grace_period,
    vcpu_enter_guest,
)
from tdxedu.kvm.tdp_mmu_invariants import tdp_mmu_invariants
from tdxedu.trace import run_to_completion as rtc


def vm(policy, n_vcpus=1, td=False):
    kvm = Kvm(nr_cpus=max(1, n_vcpus))
    kvm_mmu_init_tdp_mmu(kvm, policy, has_mirrored_tdp=td)
    for _ in range(n_vcpus):
        kvm_mmu_create(kvm.create_vcpu())
    return kvm


def run(vcpu, gfn=0x20):
    assert rtc(vcpu_enter_guest(vcpu))
    assert rtc(kvm_tdp_mmu_map(vcpu, gfn)) == "RET_PF_FIXED"


def clean(kvm):
    assert tdp_mmu_invariants(kvm) == []


# --- policies and roles ---------------------------------------------------------------------


def test_unknown_policy_lists_allowed_ones():
    with pytest.raises(ValueError) as e:
        tdp_mmu_policy("v6.5")
    for name in list(POLICIES) + list(BROKEN_POLICIES):
        assert name in str(e.value)
    with pytest.raises(TypeError):
        tdp_mmu_policy(6.3)


def test_role_validation_and_word_includes_invalid():
    with pytest.raises(ValueError, match="4 or 5"):
        KvmMmuPageRole(level=3)
    with pytest.raises(ValueError, match="mirror"):
        KvmMmuPageRole(is_mirror=True, smm=True)
    with pytest.raises(TypeError):
        KvmMmuPageRole(smm=1)
    r = KvmMmuPageRole(smm=True)
    assert r.as_id == 1 and r.word != r.with_invalid().word  # [S-69] note: role.word has invalid


def test_td_needs_a_policy_with_root_types():
    with pytest.raises(ValueError, match="mirror roots"):
        vm("v6.4", td=True)


# --- [OVH22]: v6.3 protocol ------------------------------------------------------------------


def test_v63_last_put_of_valid_root_resurrects_and_queues_zap():
    """[OVH22] kvm_tdp_mmu_put_root (v6.3): mark invalid, refcount back to 1, queue the zap."""
    kvm = vm("v6.3", td=False)
    kvm.arch.tdp_mmu_inline_worker = False
    v = kvm.vcpus[0]
    run(v)
    root = v.arch.mmu.root_hpa
    assert root.tdp_mmu_root_count == 1 and dict(root.refs) == {"vcpu0.root": 1}
    rtc(kvm_smm_changed(v, True))  # SMI: kvm_mmu_reset_context → unload → last put
    assert root.invalid and root.tdp_mmu_root_count == 1 and dict(root.refs) == {WQ_HOLDER: 1}
    assert list(kvm.arch.tdp_mmu_zap_wq) == [root] and root.present()
    clean(kvm)
    kvm.arch.tdp_mmu_inline_worker = True
    rtc(kvm_tdp_mmu_zap_invalidated_roots(kvm))  # = flush_workqueue in v6.3
    assert not root.present() and not root.on_list and root.rcu_pending and not root.freed
    assert kvm.arch.tdp_mmu_pages == 0
    rcu_grace_period(kvm)  # [S-69]: freed only after an RCU grace period
    assert root.freed
    clean(kvm)


def test_v63_invalidate_all_roots_takes_an_extra_reference():
    """[OVH22]: kvm_tdp_mmu_invalidate_all_roots gets a reference for the worker."""
    kvm = vm("v6.3")
    kvm.arch.tdp_mmu_inline_worker = False
    v = kvm.vcpus[0]
    run(v)
    root = v.arch.mmu.root_hpa
    rtc(kvm.mmu_lock.write_lock("t"))
    assert kvm_tdp_mmu_invalidate_roots(kvm, who="t") == [root]
    kvm.mmu_lock.write_unlock("t")
    assert root.tdp_mmu_root_count == 2 and root.refs[WQ_HOLDER] == 1
    clean(kvm)


# --- [SC-preserve] / [ASYNC-RM] / [S-69]: v6.4+ --------------------------------------------


@pytest.mark.parametrize("policy", ["v6.4", "v6.6", "v6.16"])
def test_v64_plus_root_survives_its_last_vcpu_reference(policy):
    """[SC-preserve]: new roots start at 2; the vCPU's put leaves the TDP MMU's reference."""
    kvm = vm(policy)
    v = kvm.vcpus[0]
    run(v)
    root = v.arch.mmu.root_hpa
    assert root.tdp_mmu_root_count == 2 and root.refs[TDP_MMU_HOLDER] == 1
    rtc(kvm_smm_changed(v, True))
    run(v)
    rtc(kvm_smm_changed(v, False))
    run(v)
    assert v.arch.mmu.root_hpa is root and not root.invalid and root.tdp_mmu_root_count == 2
    assert kvm.arch.tdp_mmu_stats["roots_allocated"] == 2  # non-SMM + SMM, each once
    clean(kvm)


def test_v66_invalidate_sets_scheduled_flag_and_zap_puts_after_zapping():
    """[ASYNC-RM]: flag + invalid under the write lock; the synchronous zap clears the
    flag, zaps, then puts the TDP MMU's reference; a vCPU reference keeps the empty root."""
    kvm = vm("v6.6")
    v = kvm.vcpus[0]
    run(v)
    root = v.arch.mmu.root_hpa
    rtc(kvm.mmu_lock.write_lock("t"))
    kvm_tdp_mmu_invalidate_roots(kvm, who="t")
    kvm.mmu_lock.write_unlock("t")
    assert root.tdp_mmu_scheduled_root_to_zap and root.invalid
    clean(kvm)
    rtc(kvm_tdp_mmu_zap_invalidated_roots(kvm, True, "t"))
    assert not root.tdp_mmu_scheduled_root_to_zap and not root.present()
    assert dict(root.refs) == {"vcpu0.root": 1} and root.on_list  # outlives the zap
    clean(kvm)


def test_get_root_fails_at_zero():
    """[OVH22] / inv5: kvm_tdp_mmu_get_root is increment-unless-zero."""
    kvm = vm("v6.4")
    v = kvm.vcpus[0]
    run(v)
    root = v.arch.mmu.root_hpa
    root.tdp_mmu_root_count = 0
    assert not kvm_tdp_mmu_get_root(kvm, root, "x") and root.tdp_mmu_root_count == 0


def test_invalidate_without_write_lock_is_reported_and_invalid_bit_stripped():
    """[SC-preserve], [TDXPREP]: write lock asserted outside destruction; passing KVM_INVALID_ROOTS
    WARNs."""
    kvm = vm("v6.16")
    run(kvm.vcpus[0])
    kvm_tdp_mmu_invalidate_roots(kvm, KVM_DIRECT_ROOTS | KVM_INVALID_ROOTS, who="t")
    assert any(e.startswith("inv8") for e in tdp_mmu_invariants(kvm))
    assert "WARN_ON_ONCE" in kvm.trace.ops()
    with pytest.raises(ValueError, match="mask"):
        kvm_tdp_mmu_invalidate_roots(kvm, 0)


def test_fast_zap_requests_free_obsolete_roots_and_vcpu_reloads():
    """[M-610] kvm_mmu_zap_all_fast: the request goes out in the same write-locked section;
    the vCPU frees the obsolete root at its next entry and loads a new one."""
    kvm = vm("v6.6", 2)
    v0, v1 = kvm.vcpus
    run(v0)
    run(v1)
    old = v0.arch.mmu.root_hpa
    rtc(kvm_set_memslot(kvm, "memslot"))
    assert all(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS in v.requests for v in kvm.vcpus)
    assert old.invalid and not old.present() and old.on_list  # held by both vCPUs
    clean(kvm)
    run(v0)
    run(v1)
    assert v0.arch.mmu.root_hpa is v1.arch.mmu.root_hpa is not old
    assert not old.on_list
    rcu_grace_period(kvm)
    assert old.freed
    clean(kvm)


# --- [TDXPREP]: TDX mirror root ---------------------------------------------------------------


def test_mirror_root_lives_until_vm_destruction():
    """[TDXPREP], [RE-mirror]: fast zap and notifier release skip the mirror root, unload keeps its
    reference, kvm_mmu_destroy drops it, kvm_mmu_uninit_tdp_mmu invalidates and frees it."""
    kvm = vm("v6.16", 2, td=True)
    for v in kvm.vcpus:
        assert rtc(vcpu_enter_guest(v))
        rtc(kvm_tdp_mmu_map(v, 0x20))  # private GFN → mirror root
        rtc(kvm_tdp_mmu_map(v, (1 << 30) | 0x10))  # shared GFN → direct root
    mirror = kvm.vcpus[0].arch.mmu.mirror_root_hpa
    assert mirror.role.is_mirror and mirror is kvm.vcpus[1].arch.mmu.mirror_root_hpa
    assert mirror.tdp_mmu_root_count == 3  # TDP MMU + 2 vCPUs
    rtc(kvm_set_memslot(kvm, "memslot"))
    rtc(kvm_mmu_zap_all(kvm, "t"))
    for v in kvm.vcpus:
        rtc(kvm_mmu_unload(v))
    assert not mirror.invalid and mirror.tdp_mmu_root_count == 3
    with pytest.raises(ValueError, match="no SMM"):
        rtc(kvm_smm_changed(kvm.vcpus[0], True))
    clean(kvm)
    for v in kvm.vcpus:
        rtc(kvm_mmu_destroy(v))
    assert dict(mirror.refs) == {TDP_MMU_HOLDER: 1}
    kvm.users_count = 0
    rtc(kvm_destroy_vm(kvm, "destroy"))
    assert mirror.freed and kvm.arch.tdp_mmu_pages == 0 and not kvm.arch.tdp_mmu_roots
    clean(kvm)


# ---  inv12/13: accounting and destruction ----------------------------------------------


def test_tdp_mmu_pages_counts_non_root_page_tables():
    """inv12: a first fault in a 4-level root links 3 page tables; a nearby GFN none."""
    kvm = vm("v6.16")
    v = kvm.vcpus[0]
    run(v, 0x20)
    assert kvm.arch.tdp_mmu_pages == 3
    rtc(kvm_tdp_mmu_map(v, 0x21))
    assert kvm.arch.tdp_mmu_pages == 3
    rtc(kvm_tdp_mmu_map(v, 1 << 30))
    assert kvm.arch.tdp_mmu_pages == 6
    clean(kvm)


@pytest.mark.parametrize("policy", list(POLICIES))
def test_vm_destruction_frees_every_root(policy):
    """inv13 / [RE-P2]: after kvm_destroy_vm no root is left, tdp_mmu_pages is 0, on every
    policy."""
    kvm = vm(policy, 2)
    v0, v1 = kvm.vcpus
    run(v0)
    run(v1)
    rtc(kvm_smm_changed(v0, True))
    run(v0)
    rtc(kvm_set_memslot(kvm, "memslot"))
    run(v1, 0x1234)
    rtc(kvm_destroy_vm(kvm, "destroy"))
    a = kvm.arch
    assert a.tdp_mmu_uninit == "done"
    assert not a.tdp_mmu_roots and not a.tdp_mmu_live and a.tdp_mmu_pages == 0
    assert a.tdp_mmu_stats["roots_freed"] == a.tdp_mmu_stats["roots_allocated"] >= 2
    assert not kvm.vm_bugged
    clean(kvm)


def test_valid_roots_types_mask():
    assert KVM_VALID_ROOTS == 6


@pytest.mark.parametrize("policy", ["v6.4", "v6.16"])
def test_at_most_six_direct_roles(policy):
    """[SC-preserve] / inv7: {4,5}-level x {!SMM, SMM} + {4,5}-level guest_mode = 6 roots, and
    cycling through all of them again allocates nothing new."""
    kvm = vm(policy, 1)
    v = kvm.vcpus[0]
    combos = [(lvl, smm, gm) for lvl in (4, 5) for smm, gm in
              ((False, False), (True, False), (False, True))]
    for _ in range(2):
        for lvl, smm, gm in combos:
            v.arch.tdp_level, v.arch.smm, v.arch.guest_mode = lvl, smm, gm
            rtc(kvm_mmu_reset_context(v))
            run(v)
            clean(kvm)
    assert kvm.arch.tdp_mmu_stats["roots_allocated"] == len(kvm.arch.tdp_mmu_roots) == 6
