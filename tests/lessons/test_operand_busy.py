"""Lesson 03 (TDX_OPERAND_BUSY): every exercise checker rejects wrong answers and accepts the
hidden solution; the generated tables say what the references say; the lesson widget responds
to Step."""

import pytest

from tdxedu.kvm.kvm import KVM_REQ_OUTSIDE_GUEST_MODE
from tdxedu.lessons import operand_busy as ob
from tdxedu.lessons import operand_busy_locks as obl
from tdxedu.lessons.operand_busy_exercises import (
    SOLUTIONS,
    check_busy_policy,
    check_busy_prediction,
    show_solution,
)
from tdxedu.tdx import status as st
from tdxedu.tdx.locks import EntryLock, SharexLock


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


def test_lock_table_matches_the_module():
    """REFERENCE_LOCKS transcribes module 1.5 tdh_vp_enter.c, tdh_mem_*.c and tdg_mem_page_*.c;
    the spy finds the same locks in the model (the guest TDCALLs: only the entry's guest lock)."""
    rows = obl.lock_table()
    assert obl.lock_differences(rows) == []
    assert {r.call for r in rows} == set(obl.REFERENCE_LOCKS)
    enter = next(r for r in rows if r.call == "TDH.VP.ENTER")
    assert set(enter.held_in_guest) == {"TDR", "TDVPR"}
    assert all(not r.status.startswith("TDX_") or r.status == "TDX_SUCCESS" for r in rows)
    assert "every lock matches" in obl.format_lock_table(rows)


def test_vp_enter_phases():
    """tdh_vp_enter.c: in the 0-step check the vCPU holds TDR, TDVPR, OP_STATE shared and the
    S-EPT tree exclusively, not the epoch lock, and is already counted in REFCOUNT; in the
    guest only TDR and TDVPR remain (td_exit.c releases them)."""
    (_, check, counted1), (_, guest, counted2) = obl.vp_enter_phases()
    assert check == {"TDR": "S", "TDVPR": "S", "OP_STATE": "S", "TD epoch": "-",
                     "S-EPT tree": "X"}
    assert guest == {"TDR": "S", "TDVPR": "S", "OP_STATE": "-", "TD epoch": "-",
                     "S-EPT tree": "-"}
    assert counted1 and counted2
    assert "inside the 0-step check" in obl.format_vp_enter_phases()


def test_lock_spy_restores_the_lock_methods():
    before = (SharexLock.try_shared, SharexLock.try_exclusive, EntryLock.try_host,
              EntryLock.try_guest)
    with pytest.raises(ZeroDivisionError), obl.lock_spy():
        raise ZeroDivisionError
    assert before == (SharexLock.try_shared, SharexLock.try_exclusive, EntryLock.try_host,
                      EntryLock.try_guest)


def test_busy_matrix_cells():
    m = ob.busy_matrix()
    assert m["guest ACCEPT of P"]["BLOCK P"] == "BUSY|RCX"
    assert m["VP.ENTER 0-step check"]["BLOCK P"] == "BUSY|SEPT"
    # tdh_vp_enter.c: the epoch lock is released before the 0-step check (helpers.c
    # adjust_tlb_tracking_state), so TRACK is not blocked by it
    assert m["VP.ENTER 0-step check"]["TRACK"] == "ok"
    assert m["TRACK"]["VP.ENTER vCPU 1"] == "BUSY|TD_EPOCH"
    assert m["BLOCK (another page)"]["AUG"] == "BUSY|SEPT"
    assert set(m["vCPU 0 in the guest"].values()) <= {"ok", "NOT_BLOCKED|RCX"}


def test_host_priority_story():
    text = ob.host_priority_story()
    assert "TDX_OPERAND_BUSY_HOST_PRIORITY | TDX_OPERAND_ID_RCX" in text
    assert text.splitlines()[-1].split("->")[1].strip().startswith("TDX_SUCCESS")


def test_busy_verdicts():
    v = ob.busy_verdicts(max_steps=30)
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


def test_solutions_are_hidden():
    for name in SOLUTIONS:
        sol = show_solution(name)
        assert "hidden" in repr(sol) and "<details>" in sol._repr_html_()
    with pytest.raises(KeyError):
        show_solution("nope")


def test_lesson_03_numbers_come_from_the_model():
    """Lesson 03 shows the 0-step threshold (6), the faults that arm it (7) and the longest
    busy run generated from the model (module 1.5 td_exit_stepping.h as the model encodes
    it), not typed into the prose."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "notebooks" / "03_operand_busy.py").read_text()
    assert "zero_step_prose()" in text and "verdicts_answer(max_steps=30)" in text
    assert "STEPPING_EPF_THRESHOLD` = **" not in text  # the number is generated, not typed
    assert ob.longest_completed_run(limit=30) <= 30


def test_lesson_text_agrees_with_the_runs():
    """Lesson 03: the Step of the BUSY and the events of that Step are the ones the widget's
    source produces (the text used to say "+1 more event" above a "+2 more events" line); the
    0-step numbers are the model's (module td_exit_stepping.c, [M15])."""
    from tdxedu.lessons.operand_busy_answers import busy_runs_answer, zero_step_prose
    from tdxedu.steps import ExplorerSource
    from tdxedu.tdx.td import EPF_FAULTS_TO_ARM, STEPPING_EPF_THRESHOLD
    from tdxedu.widgets.lesson_busy import BUSY_SCRIPTS

    name = "busy-accept-kick-retry-once"
    src = ExplorerSource(name, script=BUSY_SCRIPTS[name])
    while True:
        info = src.step()
        if "BUSY" in str(info.main.status or ""):
            break
    text = str(busy_runs_answer(BUSY_SCRIPTS))
    extra = len(info.events) - 1
    assert f"Step {info.n} is the BUSY" in text
    assert f"That Step holds {extra} more event{'s' if extra > 1 else ''} besides" in text
    z = str(zero_step_prose())
    assert f"= **{STEPPING_EPF_THRESHOLD}**" in z and f"**{EPF_FAULTS_TO_ARM}** times" in z
