"""Every lesson widget's dropdowns show their longest label whole, and the roots stepper
offers only policies its scenario has (`roots-<kind>-<policy>`, tdxedu/scenarios/roots.py)."""

import ipywidgets as widgets
import pytest

from tdxedu.widgets import (
    Explorer,
    removal_stepper,
    roots_stepper,
    scenario_stepper,
    seamcall_stepper,
    td_life_stepper,
    teardown_stepper,
)
from tdxedu.widgets.lesson_busy import busy_stepper
from tdxedu.widgets.lesson_pamt import dpamt_life_stepper
from tdxedu.widgets.lesson_roots import broken_roots_stepper
from tdxedu.widgets.stepper import (
    LABEL_MARGIN_PX,
    MIN_SELECT_PX,
    ROOTS_KINDS,
    SELECT_CHROME_PX,
    dropdown_labels,
    label_px,
    roots_policies,
    select_box_px,
)

# 13px Arial, measured in Chromium: the narrowest font the box must also fit ("v6.3" 24.6 px,
# "broken-invalidate-no-request" 165.5 px); an independent floor for `label_px`.
ARIAL_13_PX = {
    "v6.3": 24.6,
    "v6.16": 31.8,
    "memslot-update-td": 108.4,
    "broken-invalidate-no-request": 165.5,
}


def explored():
    e = Explorer(scenario="roots-last-put-race-v6.3")
    e.explore_button.click()
    return e


WIDGETS = {
    "life": lambda: td_life_stepper("16K", 1),
    "teardown": lambda: teardown_stepper("16K", 1),
    "seamcalls": seamcall_stepper,
    "removal": removal_stepper,
    "scenario": scenario_stepper,
    "roots": roots_stepper,
    "roots-td": lambda: roots_stepper("vm-destroy-td"),
    "roots-broken": broken_roots_stepper,
    "busy": busy_stepper,
    "dpamt": dpamt_life_stepper,
    "explorer": explored,
}


def dropdowns(w):
    if isinstance(w, widgets.Dropdown):
        yield w
    for child in getattr(w, "children", ()):
        yield from dropdowns(child)


@pytest.mark.parametrize("name", WIDGETS)
def test_each_dropdown_fits_its_longest_label(name):
    found = list(dropdowns(WIDGETS[name]().widget))
    assert found, f"{name} has no dropdown"
    for dd in found:
        longest = max(dropdown_labels(dd), key=label_px)
        box = select_box_px(dd)
        # the select box holds the text plus its padding and arrow (ipywidgets' CSS) ...
        assert box >= label_px(longest) + SELECT_CHROME_PX, (dd.description, longest, box)
        assert box >= ARIAL_13_PX.get(longest, 0) + SELECT_CHROME_PX
        # ... and the description is not clipped either
        assert int(dd.style.description_width.removesuffix("px")) >= label_px(dd.description)
        assert dd.layout.width.endswith("px") and LABEL_MARGIN_PX < box


def test_short_labels_are_not_clipped():
    """Lesson 06's policy picker showed "v6." for "v6.3"."""
    pol = roots_stepper("smm-storm", policy="v6.3").controls["policy"]
    assert select_box_px(pol) >= label_px("v6.16") + SELECT_CHROME_PX + 8


def test_a_dropdown_refits_when_its_options_change():
    e = Explorer(scenario="roots-last-put-race-v6.3")
    before = e.condition.layout.width  # fitted from the start (an empty box of the minimum)
    assert select_box_px(e.condition) >= MIN_SELECT_PX
    e.explore_button.click()
    assert e.condition.options and e.condition.layout.width != before
    longest = max(dropdown_labels(e.condition), key=label_px)
    assert select_box_px(e.condition) >= label_px(longest) + SELECT_CHROME_PX


@pytest.mark.parametrize("kind", ROOTS_KINDS)
def test_every_roots_scenario_builds_under_each_offered_policy(kind):
    st = roots_stepper(kind)  # default policy v6.6 (absent for the TD kinds)
    pol = st.controls["policy"]
    assert list(pol.options) == roots_policies(kind) and pol.options
    assert st.source is not None and not st.errors and not st.invalid
    for p in pol.options:
        pol.value = p
        assert not st.errors and not st.invalid, (kind, p, st.errors)
        assert st.source.scenario.name == f"roots-{kind}-{p}"
        st.step_button.click()
        assert st.counter.value.startswith("step 1"), (kind, p, st.errors)


def test_td_roots_scenarios_offer_only_tdx_kernels():
    st = roots_stepper("vm-destroy-td")
    assert list(st.controls["policy"].options) == ["v6.16"]
    assert st.source.scenario.name == "roots-vm-destroy-td-v6.16"


def test_switching_scenario_keeps_or_replaces_the_policy():
    st = roots_stepper("smm-storm", policy="v6.3")
    st.controls["scenario"].value = "memslot-update-td"  # v6.3 has no TDX: its newest policy
    assert st.controls["policy"].value == "v6.16" and not st.errors
    st.controls["scenario"].value = "vm-destroy"  # v6.16 is still offered: kept
    assert st.controls["policy"].value == "v6.16" and not st.errors
    assert st.source.scenario.name == "roots-vm-destroy-v6.16"


def test_an_unknown_roots_scenario_is_named():
    with pytest.raises(ValueError, match="unknown roots scenario 'nope'"):
        roots_stepper("nope")
