"""Widgets for lesson 03 (TDX_OPERAND_BUSY): a Stepper over the busy-* explorer scenarios
whose script follows the scenario, so the first Steps reproduce the BUSY.

    st = busy_stepper("busy-accept-kick-retry-once")
    st.step_button.click()      # [vcpu0] tdh_vp_enter(...) -> TDX_SUCCESS

The scripts name the actor that runs at each scheduler step (then the first runnable actor
runs): the vCPU enters and starts its ACCEPT (or its 0-step VP.ENTER check), then KVM's zap
tries TDH.MEM.RANGE.BLOCK and finds the entry (or the tree) locked.
"""

from __future__ import annotations

import ipywidgets as widgets

from ..kvm.tdx import BUSY_POLICIES
from ..steps import ExplorerSource
from .stepper import Stepper

# Actor choices that put KVM's BLOCK inside the guest's critical section (found with
# `tdxedu explore busy-accept-no-retry`: the shortest witness of kvm_bug starts like this).
BUSY_SCRIPTS = {}
for _p in BUSY_POLICIES:
    BUSY_SCRIPTS[f"busy-accept-{_p}"] = "vcpu0, vcpu0, vcpu0, zap, zap"
    BUSY_SCRIPTS[f"busy-zero-step-{_p}"] = "vcpu0, vcpu0, zap, zap"
BUSY_SCENARIOS = tuple(BUSY_SCRIPTS)


def busy_stepper(scenario: str = "busy-accept-kick-retry-once", *, script: str | None = None,
                 panels=("timeline", "sept")) -> Stepper:
    """Step a busy-* scenario; picking a scenario loads its BUSY script (editable)."""
    if scenario not in BUSY_SCRIPTS:
        raise ValueError(f"unknown busy scenario {scenario!r}; choose from "
                         f"{', '.join(BUSY_SCENARIOS)}")
    pick = widgets.Dropdown(options=list(BUSY_SCENARIOS), value=scenario,
                            description="scenario", layout=widgets.Layout(width="420px"))
    text = widgets.Text(value=BUSY_SCRIPTS[scenario] if script is None else script,
                        description="script", continuous_update=False,
                        placeholder="actor names, e.g. vcpu0, zap",
                        layout=widgets.Layout(width="420px"))

    def follow(change):  # registered before the Stepper's own observer: runs first
        text.value = BUSY_SCRIPTS[change["new"]]

    pick.observe(follow, names="value")
    st = Stepper(lambda scenario, script: ExplorerSource(scenario, script=script),
                 controls={"scenario": pick, "script": text}, panels=panels,
                 title="KVM zaps a page while the guest holds it")
    return st


__all__ = ["BUSY_SCRIPTS", "BUSY_SCENARIOS", "busy_stepper"]
