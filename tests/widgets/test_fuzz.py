"""1,000 seeded random clicks and values per widget: never an exception, never a traceback.

Figures are built lazily by the panels; here the renderer is replaced by a cheap one so the
suite stays fast (real rendering is covered by test_widgets.py and test_viz.py)."""

import random

import pytest

import tdxedu.widgets.panels as panels
from tdxedu.widgets import (
    Explorer,
    removal_stepper,
    roots_stepper,
    scenario_stepper,
    seamcall_stepper,
    td_life_stepper,
    teardown_stepper,
)
from tdxedu.widgets.testing import random_clicks

N = 1000
VALUES = {
    "memory": ["16K", "8K", "32K", "banana", "", "0", "3K", "-4K", "64M", "1T", "12K"],
    "vcpus": [1, 2, 3, 0, -1, 9, 100],
    "seed": [0, 1, 2, 3, -5, 10**9],
    "script": ["", "zap", "vcpu0", "zap, vcpu0", "nobody", ",,,", "vcpu0 vcpu0 vcpu0"],
    "calls": ["tdh_mng_create", "tdh_mng_init, tdh_mng_create", "bogus", "",
              "tdh_mng_create, tdh_mng_key_config, tdh_phymem_page_reclaim"],
    "ops": ["block", "remove", "track, track", "kick, reenter, remove", "nope", "",
            "block, track, kick, remove, wbinvd, unblock"],
}


@pytest.fixture(autouse=True)
def cheap_pictures(monkeypatch):
    for name in ("draw_sept", "draw_pamt", "draw_timeline", "draw_lifecycle", "draw_roots"):
        monkeypatch.setattr(panels, name, lambda *a, **k: object())


def fake_png(fig) -> bytes:
    return b"png"


def fuzz(st, rng, extra=()):
    random_clicks(st, rng, VALUES, N, extra)


@pytest.mark.parametrize("build", [
    lambda: td_life_stepper("16K", 1), lambda: teardown_stepper("8K", 1), seamcall_stepper,
    removal_stepper, lambda: scenario_stepper(scenarios=["busy-accept-kick-retry-once",
                                                        "busy-accept-no-retry",
                                                        "vcpu-migration"]),
    roots_stepper])
def test_random_clicks_never_raise(build):
    st = build()
    st.render = fake_png
    st.run_limit = 300
    fuzz(st, random.Random(7))


def test_explorer_random_clicks_never_raise():
    e = Explorer(["busy-accept-kick-retry-once", "busy-accept-no-retry"])
    e.stepper.render = fake_png
    rng = random.Random(11)

    def pick_condition():
        if e.condition.options:
            e.condition.value = rng.choice(list(e.condition.options))[1]  # (label, value)

    def pick_scenario():
        e.scenario.value = rng.choice(list(e.scenario.options))

    extra = [e.replay_button.click, pick_condition, pick_condition, pick_scenario]
    explores = 0
    for _ in range(N):
        act = rng.choice(extra + [e.stepper.step_button.click, e.stepper.reset_button.click,
                                  e.explore_button.click])
        if act == e.explore_button.click:
            if explores >= 4:
                continue
            explores += 1
        act()
        assert "Traceback" not in e.message.value
