"""Every count a widget shows adds up to the rows it shows: the status line's "this Step: N
events" and the collapsed list under it, the summaries' "N SEAMCALLs (one row each)", the
Explorer replay's steps. And each source says what one Step is (`STEP_IS`)."""

import re

import pytest

from tdxedu.steps import ExplorerSource, RemovalSource, SeamcallScriptSource, TdLifeSource
from tdxedu.steps.step import StepInfo
from tdxedu.trace import MODULE_SOURCE, Event
from tdxedu.widgets import roots_stepper, seamcall_stepper, td_life_stepper
from tdxedu.widgets.lesson_pamt import DpamtLifeSource
from tdxedu.widgets.stepper import EVENTS_SHOWN, events_details

SOURCES = {
    "life": lambda: TdLifeSource("16K", 2),
    "seamcalls": SeamcallScriptSource,
    "removal": lambda: RemovalSource("block, track, kick, reenter, remove, wbinvd"),
    "explorer": lambda: ExplorerSource("hkid-release-v19-notifier", seed=0),
    "dpamt": lambda: DpamtLifeSource("2M", 1),
}


def _tally_total(text: str) -> int:
    m = re.search(r"\(this Step: (\d+) (?:events|SEAMCALLs|guest TDCALLs)", text)
    return int(m.group(1)) if m else 1


@pytest.mark.parametrize("name", SOURCES)
def test_each_step_counts_its_own_events(name):
    src = SOURCES[name]()
    assert src.STEP_IS and "more events" not in src.STEP_IS
    while not src.done:
        info = src.step()
        if not info.events:
            continue
        text = info.describe()
        assert "more event" not in text
        assert _tally_total(text) == len(info.events), text
        m = re.search(r"this Step: \d+ events: (.*)\)$", text)
        if m:  # the kinds add up to the total too
            assert sum(int(x) for x in re.findall(r"(\d+) ", m.group(1))) == len(info.events)


def test_a_step_with_several_kinds_says_each():
    """TDH.VP.ENTER and the guest's ACCEPTs until it exits are one Step (TdLifeSource)."""
    ev = [Event(0, "kvm", 0, "tdh_vp_enter", (0x8000,), "TDX_SUCCESS", MODULE_SOURCE)] + [
        Event(i, "kvm", 0, "tdg_mem_page_accept", (i,), "TDX_SUCCESS", MODULE_SOURCE)
        for i in range(1, 16)]
    assert "(this Step: 16 events: 1 SEAMCALL, 15 guest TDCALLs)" in StepInfo(1, ev).describe()
    rows = events_details(StepInfo(1, ev))
    assert "the 16 events of this Step" in rows
    assert rows.count("tdg_mem_page_accept") + rows.count("tdh_vp_enter") == 16


def test_long_steps_list_the_first_events_and_count_the_rest():
    ev = [Event(i, "kvm", 0, "tdg_mem_page_accept", (i,), "TDX_SUCCESS", MODULE_SOURCE)
          for i in range(50)]
    rows = events_details(StepInfo(1, ev))
    assert rows.count("tdg_mem_page_accept") == EVENTS_SHOWN
    assert f"and {50 - EVENTS_SHOWN} more" in rows and "the 50 events" in rows


def test_lesson_01_summary_rows_match_its_counts():
    """"12/12 Steps issued 23 SEAMCALLs (one row each)" over 23 rows, each naming its Step."""
    st = seamcall_stepper()
    st.run_button.click()
    head, *rows = st.source.summary().splitlines()
    steps, total, calls = map(int, re.match(r"(\d+)/(\d+) Steps issued (\d+) SEAMCALLs",
                                            head).groups())
    assert steps == total == len(st.source.calls) and calls == len(rows)
    assert {int(r.split()[1]) for r in rows} == set(range(1, steps + 1))
    assert calls == sum(e.source == MODULE_SOURCE for e in st.source.trace)


def test_removal_summary_counts_its_rows():
    src = RemovalSource("block, track, kick, remove, wbinvd")
    while not src.done:
        src.step()
    lines = src.summary().splitlines()
    n, exits = map(int, re.search(r"(\d+) SEAMCALLs .*; (\d+) TD exits", lines[1]).groups())
    assert n == len(lines) - 2 and exits == 2


def test_teardown_summary_total_is_the_sum_of_its_rows():
    src = TdLifeSource("16K", 2, phases=("teardown",))
    while not src.done:
        src.step()
    text = src.summary()
    total = int(re.search(r"per leaf \((\d+) in all\)", text).group(1))
    rows = [ln for ln in text.splitlines()[3:]]
    assert total == sum(int(r.split()[-1]) for r in rows)
    assert total == src.n  # the teardown: one SEAMCALL per Step


def test_lesson_06_first_step_is_the_root_allocation():
    """The roots stepper's first Step reads as what it does (allocate root#1), not as the
    lock taken on the way; its actor is the one that recorded the event."""
    st = roots_stepper("smm-storm", policy="v6.3")
    st.step_button.click()
    text = st.status_text()
    assert text.startswith("Step 1: [vcpu0] kvm_mmu_get_page(root#1")
    assert "(this Step: 6 events)" in text and "the 6 events of this Step" in st.status.value


def test_widgets_say_what_a_step_is():
    for st in (td_life_stepper("16K", 1), seamcall_stepper(), roots_stepper()):
        assert "One Step:" in st.step_help.value
        assert st.step_button.tooltip.startswith("One Step: ")


def test_explorer_replay_summary_counts_scheduler_steps_and_events():
    src = ExplorerSource("hkid-release-v19-notifier", seed=0)
    while not src.done:
        src.step()
    m = re.match(r"\S+: (\d+) Steps \((\d+) scheduler steps, (\d+) events\)", src.summary())
    steps, sched, events = map(int, m.groups())
    assert steps == src.n and sched == len(src.ex.choices) and events == len(src.trace)
    assert steps <= sched
