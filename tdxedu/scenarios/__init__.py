"""Scenario builders shared by the step sources, the lessons, the CLI and the tests.

    td.py        RunningTd: a TD of any size and vCPU count, built and torn down by KVM's code
    world.py     TdWorld: a RunningTd as an explorer `World` (actors, conditions, snapshot)
    td_races.py  the explorer's TDX scenarios: busy-*, hkid-release-*, vcpu-migration
    roots.py     TDP MMU roots scenarios (roots-*) and the SMM-reset storm
    pamt.py      Dynamic PAMT get/put races (pamt-get-put*)
    registry.py  named scenarios for `tdxedu explore`: `@scenario(...)`, `load_all()`, `get()`
"""

from .registry import SCENARIOS, Scenario, get, load_all, scenario
from .td import RunningTd, TeardownReport
from .world import TdWorld

__all__ = ["RunningTd", "TeardownReport", "TdWorld", "Scenario", "SCENARIOS", "scenario",
           "load_all", "get"]
