"""Every button and picker changes the widget's state and picture; misuse is a message."""

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


def pictures(st):
    return {k: img.value for k, img in st.images.items()}


BUILDERS = {
    "life": lambda: td_life_stepper("16K", 1),
    "teardown": lambda: teardown_stepper("16K", 1),
    "seamcalls": seamcall_stepper,
    "removal": removal_stepper,
    "scenario": lambda: scenario_stepper("busy-accept-kick-retry-once", seed=1),
    "roots": lambda: roots_stepper("memslot-update", "v6.6", seed=0),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_step_run_reset_change_text_and_pictures(name):
    st = BUILDERS[name]()
    assert st.step_button.description == "Step"  # what the browser test clicks
    text0, pics0 = st.status.value, pictures(st)
    assert all(pics0.values()) and st.counter.value == "step 0"
    st.step_button.click()
    assert st.counter.value.startswith("step 1") and st.status.value != text0
    assert pictures(st) != pics0
    assert "Step 1:" in st.status_text()
    st.run_button.click()
    assert st.source.done and "(finished)" in st.counter.value
    assert "<pre" in st.status.value  # the summary
    st.step_button.click()  # past the end: a message, not an exception
    assert "Reset" in st.message.value and st.errors
    st.reset_button.click()
    assert st.counter.value == "step 0" and pictures(st) == pics0
    assert st.message.value == ""


def test_status_names_the_kernel_function_and_source():
    st = teardown_stepper("16K", 1)
    st.step_button.click()
    assert "tdh_mem_range_block" in st.status.value
    assert "tdx_sept_remove_private_spte" in st.status.value
    assert "arch/x86/kvm/vmx/tdx.c" in st.status.value and "why?" in st.status.value


def test_strategy_picker_rebuilds_the_source():
    st = teardown_stepper("16K", 1)
    st.controls["strategy"].value = "terminate-vm"
    assert st.source.strategy == "terminate-vm" and "terminate-vm" in st.status.value
    st.run_button.click()
    assert "tdh_phymem_page_reclaim" in st.source.summary()
    assert "tdh_mem_page_remove" not in st.source.summary()


@pytest.mark.parametrize("field,value,words", [
    ("memory", "banana", "memory"), ("memory", "3K", "4096"), ("memory", "64M", "at most"),
    ("vcpus", 0, "vcpus"), ("vcpus", 99, "vcpus")])
def test_a_bad_setting_keeps_its_warning_and_disables_step_until_fixed(field, value, words):
    """A value the model refuses never silently runs the previous TD: the warning stays, the
    pictures of the old run go, Step / Run / Reset are disabled, and a click (from Python a
    disabled button still fires) only repeats the warning."""
    st = td_life_stepper("16K", 1)
    st.controls[field].value = value
    assert words in st.message.value and "Traceback" not in st.message.value
    assert "Error:" not in st.message.value  # plain words, no Python class names
    assert st.source is None and not any(pictures(st).values())
    assert st.step_button.disabled and st.run_button.disabled and st.reset_button.disabled
    st.step_button.click()
    st.run_button.click()
    assert words in st.message.value and st.counter.value == "step 0"
    assert "Fix the setting" in st.status.value
    st.controls[field].value = {"memory": "16K", "vcpus": 1}[field]  # fixed
    assert st.message.value == "" and not st.step_button.disabled
    st.step_button.click()
    assert st.counter.value == "step 1" and all(pictures(st).values())
    assert st.source.memory == "16K" and st.source.vcpus == 1


def test_a_bad_setting_disables_the_lesson_05_pamt_button_too():
    from tdxedu.widgets.lesson_pamt import dpamt_life_stepper

    st = dpamt_life_stepper("2M", vcpus=1)
    st.controls["memory"].value = "banana"
    assert st.pamt_button.disabled and st.step_button.disabled
    st.controls["memory"].value = "2M"
    assert not st.pamt_button.disabled


def test_messages_are_plain_words():
    from tdxedu.widgets.stepper import plain_message

    assert plain_message(ValueError("pick a condition")) == "pick a condition"
    assert plain_message(KeyError("unknown scenario 'x'")) == "unknown scenario 'x'"
    assert "ZeroDivisionError" not in plain_message(ZeroDivisionError("division by zero"))


def test_seamcall_presets_and_typed_orders():
    st = seamcall_stepper()
    st.preset.value = "MNG.INIT before KEY.CONFIG"
    st.run_button.click()
    assert "TDX_TD_KEYS_NOT_CONFIGURED" in st.status.value
    st.controls["calls"].value = "tdh_mng_create, tdh_bogus"
    assert "unknown SEAMCALL" in st.message.value and "tdh_bogus" in st.message.value


def test_removal_presets_show_the_module_errors():
    st = removal_stepper()
    for preset, status in [("no BLOCK", "TDX_GPA_RANGE_NOT_BLOCKED"),
                           ("no TRACK", "TDX_TLB_TRACKING_NOT_DONE"),
                           ("no kick", "TDX_TLB_TRACKING_NOT_DONE"),
                           ("TRACK twice, no kick", "TDX_PREVIOUS_TLB_EPOCH_BUSY")]:
        st.preset.value = preset
        st.run_button.click()
        assert status in st.source.summary(), preset
    st.controls["vcpus"].value = 7
    assert "vcpus" in st.message.value


def test_scenario_seed_and_script_pickers():
    st = scenario_stepper("busy-accept-kick-retry-once", seed=1)
    st.controls["seed"].value = 2
    assert st.source.seed == 2
    st.controls["script"].value = "nobody"
    st.step_button.click()
    assert "cannot run now" in st.message.value


def test_roots_picker_offers_only_the_scenarios_policies():
    st = roots_stepper()
    st.controls["scenario"].value = "vm-destroy-td"  # TD roots: only the TDX kernel's policy
    assert "v6.3" not in st.controls["policy"].options and not st.errors
    assert st.source.scenario.name == "roots-vm-destroy-td-v6.16"
    seen = {bytes(st.images["roots"].value)}
    while not st.source.done:
        st.step_button.click()
        seen.add(bytes(st.images["roots"].value))
    assert len(seen) > 2  # the root list changed as the VM was destroyed


def test_explorer_verdicts_and_witness_replay():
    e = Explorer(scenario="busy-accept-kick-retry-once")
    assert e.replay_button.disabled  # nothing to replay before Explore
    e.replay_button.click()
    assert "Explore first" in e.message.value
    e.explore_button.click()
    values = [v for _label, v in e.condition.options]
    assert "always" in e.verdicts.value and "completed" in values
    # the picker defaults to the first condition with a witness and offers no "never" one
    witnessed = [c for c, v in e.result.verdicts.items() if v.witness is not None]
    assert values == witnessed and e.condition.value == witnessed[0]
    assert not any(e.result.verdicts[c].verdict == "never" for c in values)
    assert not e.replay_button.disabled
    e.replay_button.click()  # no pick needed: the default replays
    assert e.message.value == "" and e.stepper.source is not None
    e.condition.value = "completed"
    e.replay_button.click()
    st = e.stepper
    pic0 = st.images["timeline"].value
    st.step_button.click()
    assert st.counter.value == "step 1" and st.images["timeline"].value != pic0
    st.run_button.click()
    assert "outcome completed" in st.source.summary()
    e.scenario.value = "vcpu-migration"
    assert e.result is None and e.condition.options == () and e.replay_button.disabled


def test_explorer_reduction_switch_same_table_fewer_steps():
    """The reduction picker: on the pre-merge BUSY retry loop ([Y-RFC]) the stutter reduction
    gives the same verdict rows in far fewer steps, its witness replays in the stepper, and
    switching clears the last result (it no longer matches the picker)."""
    e = Explorer(scenario="busy-zero-step-retry-loop")
    assert e.reduction.value == "merge"
    e.explore_button.click()
    merged_rows = e.verdicts.value.split("<table")[1]
    merged_steps = e.result.steps
    assert f"{merged_steps:,} steps executed (merge)" in e.verdicts.value
    e.reduction.value = "stutter"
    assert e.result is None and e.replay_button.disabled
    e.explore_button.click()
    assert e.verdicts.value.split("<table")[1] == merged_rows
    assert "(stutter)" in e.verdicts.value and e.result.steps * 20 < merged_steps
    e.condition.value = "softlockup"
    e.replay_button.click()
    e.stepper.run_button.click()
    assert e.message.value == ""
    assert "conditions true: completed, softlockup" in e.stepper.source.summary()


def test_explorer_verdict_columns_are_separated():
    """Each verdict cell is padded: "entered_after_vm_dead" and "never" never run together."""
    e = Explorer(scenario="hkid-release-v19-notifier")
    e.explore_button.click()
    html = e.verdicts.value
    assert html.count("padding:") >= 4 * (len(e.result.verdicts) + 1)
    assert "entered_after_vm_deadnever" not in html.replace("</code></td><td", "")


def test_dropdowns_are_wide_enough_for_their_labels():
    st = removal_stepper()
    longest = max(len(o) for o in st.preset.options)
    width = int(st.preset.layout.width.removesuffix("px"))
    assert width >= longest * 7 + int(st.preset.style.description_width.removesuffix("px"))


def test_displays_with_a_short_text_form():
    st = removal_stepper()
    data = st._repr_mimebundle_()
    # What a viewer that cannot draw the widget shows: what it is and what to do.
    assert data["text/plain"] == (
        f"tdxedu Stepper: {st.source.title}. Run this cell to start the widget.")
    assert "application/vnd.jupyter.widget-view+json" in data


def test_any_refusal_while_rebuilding_disables_the_old_run():
    """Not only ValueError: whatever the model raises for a setting, the old run goes."""
    from tdxedu.widgets.stepper import Stepper

    def make(n):
        if n == 2:
            raise RuntimeError("KVM_TDX_INIT_VM failed")
        return td_life_stepper("16K", 1).source

    import ipywidgets as widgets

    st = Stepper(make, controls={"n": widgets.IntText(value=1, description="n")})
    st.controls["n"].value = 2
    assert st.source is None and st.step_button.disabled
    assert "KVM_TDX_INIT_VM failed" in st.message.value and "RuntimeError" not in st.message.value


def test_explorer_composer_explores_and_replays_a_composed_spec():
    """The composer box runs `compose.parse`/`compose.build` (as `tdxedu explore --compose`):
    typing a spec picks the composed entry; Explore, verdicts and replay work as for a
    prepared scenario (a vCPU in KVM_RUN while the mm is released: [K616] tdx_vcpu_load)."""
    from tdxedu.scenarios import compose
    from tdxedu.widgets.explorer import COMPOSED

    e = Explorer(scenario="vcpu-migration")
    assert e.spec.placeholder == compose.EXAMPLE and e.spec_message.value == ""
    e.spec.value = "vcpus=2 pages=2 actors=run,migrate,mm,close"
    assert e.scenario.value == COMPOSED and not e.explore_button.disabled
    assert "composed TD world" in e.verdicts.value
    e.explore_button.click()
    assert e.message.value == "" and e.result.name.startswith("composed: vcpus=2")
    assert e.result.complete and "completed" in e.result.verdicts
    assert "always" in e.verdicts.value or "sometimes" in e.verdicts.value
    e.condition.value = "completed"
    e.replay_button.click()
    st = e.stepper
    assert e.message.value == "" and st.source.scenario.name == e.result.name
    st.run_button.click()
    assert "outcome completed" in st.source.summary()
    # going back to a prepared scenario ignores the spec
    e.scenario.value = "vcpu-migration"
    assert e.result is None and not e.explore_button.disabled and e.spec_message.value == ""


def test_explorer_composer_bad_spec_is_a_message_and_disables_explore():
    from tdxedu.scenarios import compose

    e = Explorer(spec="vcpus=1 actors=run,run,mm,close")
    want = None
    try:
        compose.parse(e.spec.value)
    except compose.ComposeError as exc:
        want = str(exc)
    assert want == "2 vCPU actors but vcpus=1: each vCPU runs one thread"
    assert e.spec_error == want and want in e.spec_message.value and e.explore_button.disabled
    assert "Error" not in e.spec_message.value and "Traceback" not in e.spec_message.value
    e.explore_button.click()  # clicked from Python anyway: the same message, nothing run
    assert "each vCPU runs one thread" in e.message.value and e.result is None
    for bad, words in [("actors=smi", "TDP MMU roots world"), ("vcpus=9", "from 1 to 4"),
                       ("colour=red", "unknown key 'colour'"), ("", "empty spec")]:
        e.spec.value = bad
        assert words in e.spec_message.value and e.explore_button.disabled, bad
    e.spec.value = "vcpus=1 actors=run,mm,close"
    assert e.spec_message.value == "" and not e.explore_button.disabled
    e.explore_button.click()
    assert e.result is not None and e.result.complete


def test_saved_view_style_rides_in_every_lesson_widget():
    """Each Stepper and Explorer carries the rule that replaces ipywidgets' broken-link icons
    on a saved (not yet running) widget by one 'Saved view' line; the browser test checks
    what the page then shows."""
    from tdxedu.widgets.stepper import RUN_TO_START, SAVED_VIEW_CSS

    for w in (Explorer(scenario="busy-accept-kick-retry-once").widget,
              td_life_stepper().widget):
        first = w.children[0]
        assert isinstance(first, widgets.HTML) and SAVED_VIEW_CSS in first.value
        assert "tdxedu-saved-view-style" in first._dom_classes
    assert f"Saved view. {RUN_TO_START}" in SAVED_VIEW_CSS
    assert ".jupyter-widgets-disconnected::before{content:none" in SAVED_VIEW_CSS
