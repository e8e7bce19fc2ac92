"""Lesson 05/06 widgets: the Dynamic PAMT TD-life stepper (Step, Next PAMT op, pickers) and
the broken-variant roots stepper. Buttons change state and picture; 1,000 seeded random clicks
and values never raise or show a traceback."""

import random

import pytest

import tdxedu.widgets.lesson_pamt as lesson_pamt
import tdxedu.widgets.panels as panels
from tdxedu.viz import artists_by_gid
from tdxedu.widgets.lesson_pamt import (
    DpamtLifeSource,
    dpamt_life_stepper,
    dpamt_view,
    draw_dpamt,
)
from tdxedu.widgets.lesson_roots import BROKEN_CASES, broken_roots_stepper, draw_storm
from tdxedu.widgets.testing import random_clicks

N = 1000


def test_first_step_is_pamt_add_and_changes_text_and_picture():
    st = dpamt_life_stepper("64K", vcpus=1)
    text0, png0 = st.status.value, st.images["dpamt"].value
    st.step_button.click()
    assert st.message.value == ""
    assert "tdh_phymem_pamt_add" in st.status_text()
    assert st.status.value != text0 and st.images["dpamt"].value != png0
    view = dpamt_view(st.source.td.host)  # the fast-path gets that follow need no SEAMCALL
    assert list(view) == [0] and view[0][0] and view[0][1] >= 1


def test_next_pamt_op_jumps_to_add_and_remove():
    st = dpamt_life_stepper("2M", vcpus=1)
    seen = []
    for _ in range(6):
        st.pamt_button.click()
        if st.last is not None:
            seen.append(st.last.main.op)
    assert seen[:2] == ["tdh_phymem_pamt_add"] * 2
    assert "tdh_phymem_pamt_remove" in seen
    assert st.source.done and st.source.pairs() == 0 and st.source.refs() == 0
    st.pamt_button.click()  # past the end: a message, no traceback
    assert "Reset" in st.message.value


def test_pair_square_and_refcount_bar_on_the_map():
    src = DpamtLifeSource("64K", vcpus=1)
    src.step()
    gids = artists_by_gid(draw_dpamt(src.td.host))
    assert "pair:0x0" in gids and "refcount:0x0" in gids
    assert gids["pair:0x0"].get_facecolor()[:3] != (1.0, 1.0, 1.0)


def test_policy_picker_and_bad_values_give_messages():
    st = dpamt_life_stepper("64K", vcpus=1)
    st.controls["policy"].value = "phys-prepare"
    st.run_button.click()
    assert st.source.done and "ENOMEM" in st.status.value  # KVM gave up, shown in the widget
    st.controls["memory"].value = "banana"
    assert "banana" in st.message.value and "Traceback" not in st.message.value
    st.step_button.click()
    assert "fix the settings" in st.message.value or st.message.value


def test_kmem_cache_ctor_leaves_a_pair_with_no_td():
    src = DpamtLifeSource("64K", vcpus=1, policy="kmem-cache-ctor").run_to_end()
    assert src.pairs() == 1 and src.refs() > 0 and not src.td.host.module.tds


def test_broken_stepper_reaches_the_violation():
    st = broken_roots_stepper("broken-free-valid-root")
    text0, png0 = st.status.value, st.images["roots"].value
    st.step_button.click()
    assert st.status.value != text0 and st.images["roots"].value != png0
    st.run_button.click()
    assert "invariant violated: inv2" in st.status.value
    for name in BROKEN_CASES:
        st.controls["variant"].value = name
        st.run_button.click()
        assert "invariant violated" in st.status.value, name


def test_storm_plot_has_one_line_per_policy():
    fig = draw_storm({"v6.3": ([0, 1, 2], [1, 3, 5]), "v6.4": ([0, 1, 2], [1, 2, 2])})
    assert len(fig.axes[0].lines) == 2


@pytest.fixture
def cheap_pictures(monkeypatch):
    for name in ("draw_pamt", "draw_timeline", "draw_roots"):
        monkeypatch.setattr(panels, name, lambda *a, **k: object())
    monkeypatch.setattr(lesson_pamt, "draw_dpamt", lambda *a, **k: object())


VALUES = {"memory": ["16K", "64K", "2M", "banana", "", "0", "3K", "8M", "256K"],
          "vcpus": [1, 2, 0, -1, 9]}


def _fuzz(st, rng, extra=()):
    random_clicks(st, rng, VALUES, N, extra)


def test_dpamt_stepper_random_clicks_never_raise(cheap_pictures):
    st = dpamt_life_stepper("64K", vcpus=1)
    st.render = lambda fig: b"png"
    st.run_limit = 300
    _fuzz(st, random.Random(5), extra=[st.pamt_button.click] * 2)


def test_broken_stepper_random_clicks_never_raise(cheap_pictures):
    st = broken_roots_stepper()
    st.render = lambda fig: b"png"
    _fuzz(st, random.Random(6))
