"""The TDP MMU and KVM's TDX glue on one path (`tdxedu.kvm.mirror`): the mirror root's changes
drive the S-EPT through the external-SPTE hooks ([TDXPREP] [RE-P2])."""

from __future__ import annotations

from tdxedu.kvm.mirror import tdx_attach_tdp_mmu
from tdxedu.kvm.tdp_mmu import RET_PF_FIXED, kvm_tdp_mmu_map
from tdxedu.kvm.tdp_mmu_invariants import tdp_mmu_invariants
from tdxedu.mutants.check import check_all, run_factory
from tdxedu.mutants.scenarios import FACTORIES
from tdxedu.scenarios import RunningTd
from tdxedu.trace import run_to_completion


def test_mirror_root_adopts_the_td_and_teardown_goes_through_it():
    td = RunningTd(memory=3 * 4096, vcpus=2)
    tdx_attach_tdp_mmu(td)
    mirror = td.kvm.vcpus[0].arch.mmu.mirror_root_hpa
    assert mirror.role.is_mirror and sorted(mirror.leafs) == [0, 1, 2]
    assert len(mirror.sps) == len(td.kt.sept_pages) == 3
    assert tdp_mmu_invariants(td.kvm) == []
    rep = td.teardown()
    assert rep.ok and rep.hkid_state == "free", rep.summary()
    assert td.kt.sept_pages == {} and td.kvm.arch.tdp_mmu_roots == []
    assert tdp_mmu_invariants(td.kvm) == [] and td.host.check_invariants() == []
    # the S-EPT pages were reclaimed from the mirror root's zap (free_external_spt)
    ops = [e.op for e in rep.trace.events]
    assert ops.index("tdp_mmu_zap_root") > max(
        i for i, o in enumerate(ops) if o == "tdh_mng_key_freeid")


def test_a_private_fault_on_the_mirror_root_adds_the_sept_table_and_page():
    td = RunningTd(memory=4096, vcpus=1)
    tdx_attach_tdp_mmu(td)
    v = td.kvm.vcpus[0]
    td.host.preempt = False
    assert run_to_completion(kvm_tdp_mmu_map(v, 1)) == RET_PF_FIXED
    assert 4096 in td.kt.mirror and 1 in v.arch.mmu.mirror_root_hpa.leafs
    assert td.teardown().ok


def test_td_mirror_world_is_clean_and_the_junction_mutants_are_caught():
    r = run_factory("td-mirror", FACTORIES["td-mirror"].correct_configs()[0])
    assert r.complete and not r.alarms
    rep = check_all(["zap-skips-external", "uninit-skips-free-external-spt"], baseline=False)
    for res in rep["mutants"]:
        assert res.expected_seen, res.mutant.name
        assert res.first()[1].condition not in ("step_bound", "exception")
