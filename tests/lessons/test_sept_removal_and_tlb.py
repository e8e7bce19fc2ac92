"""Lesson 02 (Secure-EPT removal and TLB tracking): each exercise checker rejects a wrong
answer and accepts the hidden solution, which stays hidden until clicked."""

from tdxedu.lessons.sept_removal_and_tlb_exercises import (
    SOLUTIONS,
    check_removal_order,
    check_remove_page,
    show_solution,
)


def test_removal_order():
    assert check_removal_order(SOLUTIONS["removal_order"])
    assert not check_removal_order(["block", "track", "kick", "remove"])  # no WBINVD
    assert "TLB_TRACKING" in check_removal_order(["block", "track", "remove"]).message
    assert "NOT_BLOCKED" in check_removal_order(["track", "kick", "remove"]).message


def test_remove_page():
    assert check_remove_page(SOLUTIONS["remove_page"])
    assert not check_remove_page(lambda lab: (lab.do("block"), lab.do("remove")))
    assert not check_remove_page(lambda lab: 1 / 0)
    assert not check_remove_page("not a function")


def test_solutions_are_hidden_by_default():
    s = show_solution("remove_page")
    assert "<details>" in s._repr_html_() and "lab.do" in s._repr_html_()
    assert "lab.do" not in repr(s)


def test_removal_text_names_what_fails():
    """Lesson 02's answer: one explanation per preset of the widget; 'kick before TRACK' says
    that REMOVE fails, with TDX_TLB_TRACKING_NOT_DONE (module tdh_mem_page_remove.c,
    is_tlb_tracked, [M15]); the epochs are the module's."""
    from tdxedu.lessons.sept_removal_and_tlb import (
        TEACHES,
        epoch_answer,
        preset_runs,
        removal_answer,
    )
    from tdxedu.widgets.stepper import REMOVAL_PRESETS

    assert set(TEACHES) == set(REMOVAL_PRESETS)
    runs = preset_runs(REMOVAL_PRESETS)
    kbt = runs["kick before TRACK"]
    assert kbt["last"] == ("tdh_mem_page_remove", "TDX_TLB_TRACKING_NOT_DONE | TDX_OPERAND_ID_RCX")
    text = str(removal_answer(REMOVAL_PRESETS))
    line = text.split("**kick before TRACK**", 1)[1].split("\n* ")[0]
    assert "REMOVE gets `TDX_TLB_TRACKING_NOT_DONE" in line
    assert "`TD_EPOCH` = 2" in str(epoch_answer())
