"""One alarm list ([K616] KVM_BUG_ON / WARN, [S-TDX] lockdep and RCU rules): every condition
any checker reports is classified as an alarm or a fact, and a mutant counts as caught only by
a named check, never by a step bound or a Python exception."""

from __future__ import annotations

import pytest

from tdxedu.kvm.kvm import Kvm
from tdxedu.kvm.locks import Mutex, RwLock, lockdep_assert_held, lockdep_assert_held_write
from tdxedu.mutants import catalogue, catalogue_modules
from tdxedu.mutants.check import ALARM_CONDITIONS, Alarm, check_name
from tdxedu.mutants.scenarios import FACTORIES, Config
from tdxedu.scenarios.alarms import ALARMS, FACTS
from tdxedu.scenarios.registry import load_all
from tdxedu.sim.engine import OUTCOMES, run_seeded
from tdxedu.trace import run_to_completion


def _reported_conditions() -> dict[str, str]:
    seen: dict[str, str] = {}
    builds = [(n, s.build, s.max_steps) for n, s in load_all().items()]
    builds += [(f"factory {n}", (lambda f=f: f.build(Config())), f.max_steps)
               for n, f in FACTORIES.items()]
    for name, build, steps in builds:
        r = run_seeded(build, 0, max_steps=steps)
        for c in r.conditions:
            seen.setdefault(c, name)
    return seen


def test_every_condition_is_an_alarm_or_a_fact():
    assert not set(ALARMS) & set(FACTS)
    unknown = {c: where for c, where in _reported_conditions().items()
               if c not in ALARMS and c not in FACTS and c not in OUTCOMES}
    assert not unknown, f"classify these in tdxedu/scenarios/alarms.py: {unknown}"
    assert ALARM_CONDITIONS == tuple(ALARMS)
    # the Dynamic PAMT WARNs and the TDP MMU's WARN_ONs are alarms too
    assert {"pamt_warn", "tdp_mmu_warn", "entered_after_vm_dead", "softlockup"} <= set(ALARMS)


def test_step_bound_and_exception_are_never_named_checks():
    assert check_name("step_bound", "") is None
    assert check_name("exception", "ZeroDivisionError") is None
    assert check_name("deadlock", "") == "hung_task"
    assert check_name("invariant_violated", "lockdep: tdx_track: ...") == "lockdep"
    assert check_name("invariant_violated", "inv6: root#1 touched") == "inv6"
    assert check_name("kvm_bug", "KVM_BUG_ON: x") == "kvm_bug"
    assert Alarm("step_bound", "sometimes", "1/2", []).check is None


def test_lockdep_assertions_report_instead_of_raising():
    """lockdep_assert_held_write on a rwlock held for read is a named report in the owner's
    list; a bad unlock is lockdep's 'bad unlock balance', not a Python exception."""
    kvm = Kvm(nr_cpus=1)
    run_to_completion(kvm.mmu_lock.read_lock("zap"))
    assert not lockdep_assert_held_write(kvm.mmu_lock, "tdx_track")
    assert lockdep_assert_held(kvm.mmu_lock, "tdp_mmu_next_root")
    kvm.mmu_lock.write_unlock("zap")
    kvm.lock.unlock("nobody")
    assert [e.split(":")[0] for e in kvm.debug_errors] == ["lockdep"] * 3
    assert "held for read by zap" in kvm.debug_errors[0]
    assert "bad unlock balance" in kvm.debug_errors[1]
    # a bare lock (no owner to report to) still raises: unit tests see the mistake at once
    with pytest.raises(RuntimeError, match="lockdep"):
        Mutex("m").unlock("x")
    with pytest.raises(RuntimeError, match="lockdep"):
        RwLock("r").read_unlock("x")


def test_catalogue_finds_every_family_module():
    mods = catalogue_modules()
    assert mods[:5] == ["removal", "teardown", "vcpu", "roots", "pamt"]
    fams = {m.family for m in catalogue().values()}
    assert "lockdep" in fams and "lockdep" in mods


def test_a_text_invariant_is_named_without_its_addresses():
    name = check_name("invariant_violated", "page 0x11000 freed with dirty cache lines under "
                                            "KeyID 33")
    assert name == "invariant: page N freed with dirty cache lines under KeyID N"


def test_explore_names_the_alarms_that_hold(capsys):
    """`tdxedu explore` reads the same alarm list: v19's race raises kvm_bug and hkid_leaked;
    the 6.16 kick-and-retry-once raises none."""
    from tdxedu.cli import main

    assert main(["explore", "hkid-release-v19-notifier"]) == 0
    out = capsys.readouterr().out
    assert "alarms (in some run): kvm_bug, hkid_leaked" in out
    assert main(["explore", "busy-accept-kick-retry-once"]) == 0
    assert "alarms: none in any run" in capsys.readouterr().out
