"""Lessons 00-02: each exercise checker rejects a wrong answer and accepts the hidden
solution."""

from tdxedu.lessons.seamcalls_and_lifecycle_exercises import SOLUTIONS as SOLUTIONS_01
from tdxedu.lessons.seamcalls_and_lifecycle_exercises import check_build_order, check_decode
from tdxedu.lessons.sept_removal_and_tlb_exercises import SOLUTIONS as SOLUTIONS_02
from tdxedu.lessons.sept_removal_and_tlb_exercises import (
    check_removal_order,
    check_remove_page,
    show_solution,
)
from tdxedu.lessons.tour_exercises import SOLUTIONS as SOLUTIONS_00
from tdxedu.lessons.tour_exercises import check_teardown_count


def test_teardown_count():
    assert check_teardown_count(SOLUTIONS_00["teardown_count_64K"])
    assert not check_teardown_count(3)
    assert not check_teardown_count("16")


def test_decode():
    for key in ("decode_sept_busy", "decode_state"):
        value, name = SOLUTIONS_01[key]
        assert check_decode(int(value, 16), name)
        assert not check_decode(int(value, 16), name.split(" | ")[0])
        assert not check_decode(int(value, 16), "TDX_SUCCESS")


def test_build_order():
    assert check_build_order(SOLUTIONS_01["build_order"])
    wrong = check_build_order(["tdh_mng_create", "tdh_mng_init"])
    assert not wrong and "TDX_TD_KEYS_NOT_CONFIGURED" in wrong.message
    assert not check_build_order(SOLUTIONS_01["build_order"][:-1])
    assert not check_build_order(["nope"])


def test_removal_order():
    assert check_removal_order(SOLUTIONS_02["removal_order"])
    assert not check_removal_order(["block", "track", "kick", "remove"])  # no WBINVD
    assert "TLB_TRACKING" in check_removal_order(["block", "track", "remove"]).message
    assert "NOT_BLOCKED" in check_removal_order(["track", "kick", "remove"]).message


def test_remove_page():
    assert check_remove_page(SOLUTIONS_02["remove_page"])
    assert not check_remove_page(lambda lab: (lab.do("block"), lab.do("remove")))
    assert not check_remove_page(lambda lab: 1 / 0)
    assert not check_remove_page("not a function")


def test_solutions_are_hidden_by_default():
    s = show_solution("remove_page")
    assert "<details>" in s._repr_html_() and "lab.do" in s._repr_html_()
    assert "lab.do" not in repr(s)
