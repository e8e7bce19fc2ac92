"""Lesson 04 (TD teardown): every exercise checker rejects wrong answers and accepts the hidden
solution; the generated tables say what the references say; the Explorer replays the v19
witness."""

import pytest

from tdxedu.lessons import td_teardown as tt
from tdxedu.lessons.td_teardown_exercises import (
    SOLUTIONS,
    check_cost_estimate,
    check_hkid_leakers,
    check_release_hkid,
    show_solution,
)


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
    choices, text = tt.hkid_release_witness("v19-notifier", "hkid_leaked")
    assert choices
    lines = text.splitlines()
    flush = next(i for i, ln in enumerate(lines) if "tdh_vp_flush" in ln)
    enter = next(i for i, ln in enumerate(lines) if "tdh_vp_enter" in ln)
    done = next(i for i, ln in enumerate(lines) if "TDX_FLUSHVP_NOT_DONE" in ln)
    assert flush < enter < done
    assert tt.hkid_release_witness("v6.16", "hkid_leaked")[0] is None


def test_flush_story_and_stages():
    story = tt.flush_story().splitlines()
    assert "TDX_VCPU_NOT_ASSOCIATED" in story[1]
    assert "TDX_FLUSHVP_NOT_DONE" in story[6] and "TD_TEARDOWN" in story[-1]
    v616 = tt.teardown_stages("16K", 2, "v6.16")
    assert "tdx_sept_remove_private_spte  tdh_mem_range_block x4" in v616
    assert "0 pages leaked" in v616
    assert "tdh_mem_range_block" not in tt.teardown_stages("16K", 2, "terminate-vm")


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
    text = tt.cost_table()
    assert "72s" in text and "517s" in text and "134s" in text


def test_solutions_are_hidden():
    for name in SOLUTIONS:
        sol = show_solution(name)
        assert "hidden" in repr(sol) and "<details>" in sol._repr_html_()
    with pytest.raises(KeyError):
        show_solution("nope")


def test_lesson_text_numbers_come_from_the_runs():
    """The Step numbers and counts the lesson states are read from the runs they describe."""
    from tdxedu.steps import ExplorerSource, td_states, teardown_source

    # The witness is numbered as the Explorer's "Replay witness" steps it.
    choices, steps = tt.witness_steps("v19-notifier", "hkid_leaked")
    src = ExplorerSource("hkid-release-v19-notifier", choices=choices)
    for n, _actor, events in steps:
        info = src.step()
        assert info.n == n and [e.op for e in info.events][: len(events)] == [
            e.op for e in events]
    answer = str(tt.hkid_release_answer())
    for op, status in (("tdh_vp_flush", None), ("tdh_vp_enter", None),
                       ("tdh_mng_vpflushdone", "TDX_FLUSHVP_NOT_DONE")):
        assert f"(Step {tt._first_step(steps, op, status)})" in answer
    assert f"{len(steps)} Steps up to `kvm_destroy_vm`" in answer

    # Section 1: the Step at which the teardown widget leaves TD_KEYS_CONFIGURED.
    src = teardown_source("16K", 2, "v6.16")
    while not src.done:
        info = src.step()
        if td_states(src.module, src.tdr)[0].name != "TD_KEYS_CONFIGURED":
            break
    assert f"leaves `TD_KEYS_CONFIGURED` at Step {info.n} (`{info.main.op}`" in str(
        tt.teardown_answer("16K", 2, "v6.16"))


def test_the_tdr_goes_last():
    """RECLAIM of the TDR with children left is TDX_TD_ASSOCIATED_PAGES_EXIST (module
    tdh_phymem_page_reclaim.c, [M15]); after the children it succeeds."""
    story = tt.reclaim_story().splitlines()
    assert "TDX_TD_ASSOCIATED_PAGES_EXIST" in story[0] and "chldcnt=0" not in story[0]
    assert "TDX_SUCCESS" in story[-1] and story[-1].endswith("chldcnt=0")
    assert "TDX_TD_ASSOCIATED_PAGES_EXIST" in str(tt.flush_answer())



def test_section_1_header_one_seamcall_per_step_holds():
    """Lesson 04's section 1 says "one SEAMCALL per Step": true of the teardown stepper."""
    from tdxedu.steps import teardown_source

    src = teardown_source("16K", 2, "v6.16")
    while not src.done:
        info = src.step()
        calls = [e for e in info.events if e.source == "tdx-module" and e.op.startswith("tdh_")]
        assert len(calls) == 1, (info.n, [e.op for e in info.events])
