"""Lessons 03 (TDX_OPERAND_BUSY) and 04 (TD teardown): every exercise checker rejects wrong
answers and accepts the hidden solution; the generated tables say what the references say;
the lesson widget responds to Step."""

import pytest

from tdxedu.kvm.kvm import KVM_REQ_OUTSIDE_GUEST_MODE
from tdxedu.lessons import busy_teardown as bt
from tdxedu.lessons.exercises_busy_teardown import (
    SOLUTIONS,
    check_busy_policy,
    check_busy_prediction,
    check_cost_estimate,
    check_hkid_leakers,
    check_release_hkid,
    show_solution,
)
from tdxedu.tdx import status as st
from tdxedu.tdx.locks import EntryLock, SharexLock


# --- 03 ----------------------------------------------------------------------------------------
def test_busy_prediction():
    assert check_busy_prediction(SOLUTIONS["busy_prediction"])
    wrong = dict(SOLUTIONS["busy_prediction"])
    wrong[("guest ACCEPT of P", "BLOCK P")] = "ok"
    assert not check_busy_prediction(wrong)
    assert not check_busy_prediction({("nobody", "BLOCK P"): "ok"})
    assert not check_busy_prediction({("TRACK", "VP.ENTER vCPU 1"): "BUSY|SEPT"})
    assert not check_busy_prediction("BUSY")
    assert not check_busy_prediction({})


def _no_retry(kt, name, *args, cpu):
    r = yield from kt.sc(name, *args, cpu=cpu)
    return r.status


def _retry_loop(kt, name, *args, cpu):
    r = yield from kt.sc(name, *args, cpu=cpu)
    while r.status.matches(st.TDX_OPERAND_BUSY):
        r = yield from kt.sc(name, *args, cpu=cpu)
    return r.status


def _retry_without_kick(kt, name, *args, cpu):
    r = yield from kt.sc(name, *args, cpu=cpu)
    if r.status.matches(st.TDX_OPERAND_BUSY):
        r = yield from kt.sc(name, *args, cpu=cpu)
    return r.status


def _flag_never_cleared(kt, name, *args, cpu):
    r = yield from kt.sc(name, *args, cpu=cpu)
    if r.status.matches(st.TDX_OPERAND_BUSY):
        kt.wait_for_sept_zap = True
        yield from kt.kvm.kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)
        r = yield from kt.sc(name, *args, cpu=cpu)
    return r.status


def test_busy_policy_solution_accepted():
    assert check_busy_policy(SOLUTIONS["busy_policy"])


@pytest.mark.parametrize("fn, word", [(_no_retry, "kvm_bug"), (_retry_loop, "step_bound"),
                                      (_retry_without_kick, "kvm_bug"),
                                      (_flag_never_cleared, "deadlock")])
def test_busy_policy_rejects(fn, word):
    c = check_busy_policy(fn)
    assert not c and word in c.message


def test_busy_policy_rejects_non_generators_and_restores_kvm():
    from tdxedu.kvm import tdx as kvm_tdx

    orig = kvm_tdx.tdh_do_no_vcpus
    assert not check_busy_policy(lambda kt, name, *a, cpu: None)
    assert not check_busy_policy(42)

    def boom(kt, name, *args, cpu):
        raise RuntimeError("bug in my policy")
        yield  # pragma: no cover

    c = check_busy_policy(boom)
    assert not c and "RuntimeError" in c.message
    assert kvm_tdx.tdh_do_no_vcpus is orig


def test_lock_table_matches_contention_md():
    rows = bt.lock_table()
    assert bt.lock_differences(rows) == []
    assert {r.call for r in rows} == set(bt.REFERENCE_LOCKS)
    enter = next(r for r in rows if r.call == "TDH.VP.ENTER")
    assert set(enter.held_in_guest) == {"TDR", "TDVPR"}
    assert all(not r.status.startswith("TDX_") or r.status == "TDX_SUCCESS" for r in rows)
    assert "every lock matches" in bt.format_lock_table(rows)


def test_lock_spy_restores_the_lock_methods():
    before = (SharexLock.try_shared, SharexLock.try_exclusive, EntryLock.try_host,
              EntryLock.try_guest)
    with pytest.raises(ZeroDivisionError), bt.lock_spy():
        raise ZeroDivisionError
    assert before == (SharexLock.try_shared, SharexLock.try_exclusive, EntryLock.try_host,
                      EntryLock.try_guest)


def test_busy_matrix_cells():
    m = bt.busy_matrix()
    assert m["guest ACCEPT of P"]["BLOCK P"] == "BUSY|RCX"
    assert m["VP.ENTER 0-step check"]["BLOCK P"] == "BUSY|SEPT"
    assert m["VP.ENTER 0-step check"]["TRACK"] == "BUSY|TD_EPOCH"
    assert m["TRACK"]["VP.ENTER vCPU 1"] == "BUSY|TD_EPOCH"
    assert m["BLOCK (another page)"]["AUG"] == "BUSY|SEPT"
    assert set(m["vCPU 0 in the guest"].values()) <= {"ok", "NOT_BLOCKED|RCX"}


def test_host_priority_story():
    text = bt.host_priority_story()
    assert "TDX_OPERAND_BUSY_HOST_PRIORITY | TDX_OPERAND_ID_RCX" in text
    assert text.splitlines()[-1].split("->")[1].strip().startswith("TDX_SUCCESS")


def test_busy_verdicts():
    v = bt.busy_verdicts(max_steps=30)
    for kind in ("busy-accept", "busy-zero-step"):
        assert v[f"{kind}-no-retry"]["kvm_bug"] == "sometimes"
        assert v[f"{kind}-kick-retry-once"]["kvm_bug"] == "never"
        assert v[f"{kind}-kick-retry-once"]["completed"] == "always"
        assert v[f"{kind}-retry-loop"]["step_bound"] == "sometimes"
        assert v[f"{kind}-retry-loop"]["kvm_bug"] == "never"


def test_busy_stepper_shows_the_busy():
    from tdxedu.widgets.lesson_busy import busy_stepper

    s = busy_stepper()
    text0, png0 = s.status.value, s.images["timeline"].value
    s.step_button.click()
    assert s.status.value != text0 and s.images["timeline"].value != png0
    s.step_button.click()
    assert "TDX_OPERAND_BUSY | TDX_OPERAND_ID_RCX" in s.status_text()
    s.controls["scenario"].value = "busy-zero-step-no-retry"
    assert s.controls["script"].value == "vcpu0, vcpu0, zap, zap"
    s.step_button.click()
    assert "TDX_OPERAND_ID_SEPT" in s.status_text() and not s.errors
    s.controls["script"].value = "nobody"
    s.step_button.click()  # a bad script is a message in the widget, not a traceback
    assert s.errors and "nobody" in s.errors[-1]
    with pytest.raises(ValueError):
        busy_stepper("no-such-scenario")


# --- 04 ----------------------------------------------------------------------------------------
def test_release_hkid():
    assert check_release_hkid(SOLUTIONS["release_hkid"])

    def one_vcpu_only(lab):
        m = lab.module
        m.tdh_vp_flush(lab.vcpus[0], lp=lab.vcpu_lp[lab.vcpus[0]])
        m.tdh_mng_vpflushdone(lab.tdr, lp=1)

    def one_package_only(lab):
        m = lab.module
        for vp in lab.vcpus:
            m.tdh_vp_flush(vp, lp=lab.vcpu_lp[vp])
        m.tdh_mng_vpflushdone(lab.tdr, lp=1)
        m.tdh_phymem_cache_wb(0, lp=0)
        m.tdh_mng_key_freeid(lab.tdr, lp=1)

    def wrong_lp(lab):
        m = lab.module
        for vp in lab.vcpus:
            m.tdh_vp_flush(vp, lp=1)
        m.tdh_mng_vpflushdone(lab.tdr, lp=1)

    for fn in (one_vcpu_only, one_package_only, wrong_lp, lambda lab: None):
        assert not check_release_hkid(fn)
    c = check_release_hkid(lambda lab: 1 / 0)
    assert not c and "ZeroDivisionError" in c.message
    assert not check_release_hkid("flush")


def test_hkid_leakers():
    assert check_hkid_leakers(SOLUTIONS["hkid_leakers"])
    assert not check_hkid_leakers({"flush-at-vcpu-free"})
    assert not check_hkid_leakers({"v19-notifier", "v6.16"})
    assert not check_hkid_leakers(set())
    assert not check_hkid_leakers({"v5.0"})
    assert not check_hkid_leakers(3)


def test_cost_estimate():
    assert check_cost_estimate(SOLUTIONS["cost_estimate"]())
    assert not check_cost_estimate(600)
    assert not check_cost_estimate(60_000)
    assert not check_cost_estimate("2000")
    assert not check_cost_estimate(-1)


def test_hkid_release_witness_shows_the_race():
    choices, text = bt.hkid_release_witness("v19-notifier", "hkid_leaked")
    assert choices
    lines = text.splitlines()
    flush = next(i for i, ln in enumerate(lines) if "tdh_vp_flush" in ln)
    enter = next(i for i, ln in enumerate(lines) if "tdh_vp_enter" in ln)
    done = next(i for i, ln in enumerate(lines) if "TDX_FLUSHVP_NOT_DONE" in ln)
    assert flush < enter < done
    assert bt.hkid_release_witness("v6.16", "hkid_leaked")[0] is None


def test_flush_story_and_stages():
    story = bt.flush_story().splitlines()
    assert "TDX_VCPU_NOT_ASSOCIATED" in story[1]
    assert "TDX_FLUSHVP_NOT_DONE" in story[6] and "TD_TEARDOWN" in story[-1]
    v616 = bt.teardown_stages("16K", 2, "v6.16")
    assert "tdx_sept_remove_private_spte  tdh_mem_range_block x4" in v616
    assert "0 pages leaked" in v616
    assert "tdh_mem_range_block" not in bt.teardown_stages("16K", 2, "terminate-vm")


def test_explorer_replays_the_v19_witness():
    from tdxedu.widgets import Explorer

    ex = Explorer(["hkid-release-v19-notifier", "hkid-release-v6.16"],
                  scenario="hkid-release-v19-notifier")
    ex.explore_button.click()
    assert "hkid_leaked" in ex.verdicts.value and not ex.stepper.errors
    ex.condition.value = "hkid_leaked"
    ex.replay_button.click()
    ex.stepper.run_button.click()
    assert "hkid_leaked" in ex.stepper.source.summary()


def test_cost_table_uses_the_measurements():
    text = bt.cost_table()
    assert "72s" in text and "517s" in text and "134s" in text


def test_solutions_are_hidden():
    for name in SOLUTIONS:
        sol = show_solution(name)
        assert "hidden" in repr(sol) and "<details>" in sol._repr_html_()
    with pytest.raises(KeyError):
        show_solution("nope")
