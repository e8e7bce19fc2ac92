"""Host-wide invariants across TDs, CPUs and Dynamic PAMT (`Host.check_invariants`):
keyid-pool ([K616] tdx_hkid_free, [M15] tdh_mng_key_freeid.c), assoc-list / assoc-offline
([K616] tdx_vcpu_load, tdx_offline_cpu, tdx_disable_virtualization_cpu), pamt-balance
([V6-05] [V6-06]), might-sleep ([V6-09])."""

from __future__ import annotations

import pytest

from tdxedu.kvm.hotplug import EBUSY, cpu_down
from tdxedu.mutants import catalogue
from tdxedu.mutants.check import check_all, run_factory
from tdxedu.mutants.scenarios import FACTORIES, Config
from tdxedu.scenarios import RunningTd
from tdxedu.trace import run_to_completion

NEW = ("quirk-reset-ignores-erratum", "clear-before-wbinvd", "tdr-no-wbinvd",
       "keyid-free-before-freeid", "keyid-not-returned", "offline-skips-flush",
       "offline-last-package-cpu", "vp-flush-on-calling-cpu",
       "no-pamt-put-on-aug-error", "topup-under-mmu-lock",
       "uninit-zap-mirror-shared", "uninit-no-invalidate", "fast-zap-no-wait")


def test_two_tds_share_the_pool_and_keyids_come_back():
    td0 = RunningTd(memory=4096, vcpus=1, name="td0")
    td1 = RunningTd(memory=4096, vcpus=1, name="td1", host=td0.host)
    h = td0.host
    assert (td0.kt.hkid, td1.kt.hkid) == (33, 34)
    assert h.hkid_owner == {33: "td0", 34: "td1"} and h.check_invariants() == []
    rep = td0.teardown()  # (host_pages_in_use is host-wide: td1's pages are still there)
    assert not (rep.leaked_pages or rep.bugs or rep.errors) and rep.hkid_state == "free"
    assert 33 in h.free_hkids and h.check_invariants() == []
    td2 = RunningTd(memory=4096, vcpus=1, name="td2", host=h)
    assert td2.kt.hkid == 33 and h.check_invariants() == []


def test_keyid_pool_invariant_names_a_key_free_in_the_pool_but_not_in_the_module():
    td = RunningTd(memory=4096, vcpus=1)
    td.host.free_hkids.append(td.kt.hkid)  # what an early tdx_guest_keyid_free would do
    v = td.host.check_invariants()
    assert any(x.startswith("keyid-pool: KeyID 33 is in the kernel's free pool but "
                            "HKID_ASSIGNED") for x in v), v


def test_offline_flushes_the_cpus_vcpus_and_the_last_package_cpu_is_refused():
    td = RunningTd(memory=4096, vcpus=2, cpus_per_package=2)  # vCPU 1 on CPU 1
    h, v1 = td.host, td.kvm.vcpus[1]
    assert run_to_completion(cpu_down(h, 1)) == 0
    assert v1.cpu == -1 and h.associated_tdvcpus[1] == [] and not h.cpu_online[1]
    assert h.one_cpu_per_package() == [0] and h.check_invariants() == []
    assert td.teardown().ok
    td2 = RunningTd(memory=4096, vcpus=2, packages=2, cpus_per_package=1)
    assert run_to_completion(cpu_down(td2.host, 1)) == EBUSY
    assert td2.host.cpu_online[1] and td2.teardown().ok


def test_assoc_list_invariant_sees_a_stale_list_entry():
    td = RunningTd(memory=4096, vcpus=2, cpus_per_package=2)
    v1 = td.kvm.vcpus[1]
    td.host.associated_tdvcpus[0].append(v1)
    assert any(x.startswith("assoc-list: vm/vcpu1 has cpu=1") for x in td.host.check_invariants())


def test_new_factories_are_clean_under_every_correct_policy():
    for name in ("two-tds", "cpu-offline", "cpu-offline-2pkg", "teardown-2pkg",
                 "dpamt-aug-busy", "roots-vm-destroy-td"):
        for cfg in FACTORIES[name].correct_configs():
            r = run_factory(name, cfg)
            assert r.complete and not r.alarms, (name, r.config, r.alarms)


def test_dpamt_aug_busy_reaches_the_busy_exit():
    from tdxedu.sim.engine import explore

    f = FACTORIES["dpamt-aug-busy"]
    ex = explore(lambda: f.build(Config()), max_steps=f.max_steps)
    assert ex.verdict("aug_busy_seen") == "sometimes" and ex.verdict("completed") == "always"


@pytest.fixture(scope="module")
def new_report():
    return check_all(list(NEW), baseline=False)


def test_each_new_mutant_is_caught_by_its_named_check(new_report):
    cat = catalogue()
    assert set(NEW) <= set(cat)
    for r in new_report["mutants"]:
        assert r.expected_seen, (r.mutant.name, [(a.condition, a.detail)
                                                  for s in r.runs for a in s.alarms])
        run, alarm = r.first()
        assert alarm.condition not in ("step_bound", "exception"), r.mutant.name
        exp = r.mutant.expected_catch
        if exp.startswith("invariant:"):
            assert alarm.detail.startswith(exp[10:]), (r.mutant.name, alarm.detail)
