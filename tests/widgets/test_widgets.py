"""Every button and picker changes the widget's state and picture; misuse is a message."""

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
def test_bad_settings_show_a_message_and_keep_the_old_run(field, value, words):
    st = td_life_stepper("16K", 1)
    old = st.source
    st.controls[field].value = value
    assert words in st.message.value and "Traceback" not in st.message.value
    assert st.source is old
    st.step_button.click()
    assert st.counter.value == "step 1"


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


def test_roots_picker_unknown_combination_is_a_message():
    st = roots_stepper()
    st.controls["scenario"].value = "vm-destroy-td"  # TD roots exist from v6.14 on only
    st.controls["policy"].value = "v6.3"
    assert "unknown scenario" in st.message.value
    st.controls["policy"].value = "v6.16"
    assert st.source.scenario.name == "roots-vm-destroy-td-v6.16"
    seen = {bytes(st.images["roots"].value)}
    while not st.source.done:
        st.step_button.click()
        seen.add(bytes(st.images["roots"].value))
    assert len(seen) > 2  # the root list changed as the VM was destroyed


def test_explorer_verdicts_and_witness_replay():
    e = Explorer(scenario="busy-accept-kick-retry-once")
    e.replay_button.click()
    assert "Explore first" in e.message.value
    e.explore_button.click()
    assert "always" in e.verdicts.value and "completed" in e.condition.options
    e.condition.value = "completed"
    e.replay_button.click()
    st = e.stepper
    pic0 = st.images["timeline"].value
    st.step_button.click()
    assert st.counter.value == "step 1" and st.images["timeline"].value != pic0
    st.run_button.click()
    assert "outcome completed" in st.source.summary()
    never = [c for c, v in e.result.verdicts.items() if v.verdict == "never"]
    if never:
        e.condition.value = never[0]
        e.replay_button.click()
        assert "no witness" in e.message.value
    e.scenario.value = "vcpu-migration"
    assert e.result is None and e.condition.options == ()


def test_displays_with_a_short_text_form():
    st = removal_stepper()
    data = st._repr_mimebundle_()
    # What a viewer that cannot draw the widget shows: what it is and what to do.
    assert data["text/plain"] == (
        f"tdxedu Stepper: {st.source.title}. Run this cell to start the widget.")
    assert "application/vnd.jupyter.widget-view+json" in data
