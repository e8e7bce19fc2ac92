"""ipywidgets front ends built on ``tdxedu.viz`` (no display side effects at import).

Each builder returns an object that displays as a widget tree; notebooks call it in one line
and tests drive it headlessly with ``.value = ...`` and ``.click()``:

    td_life_stepper()      a TD's build and teardown through KVM's code, one SEAMCALL a Step
    teardown_stepper()     the teardown only, strategy / memory / vCPU pickers
    seamcall_stepper()     SEAMCALLs in an order you pick or type (read the errors)
    removal_stepper()      BLOCK / TRACK / kick / REMOVE on a running TD in your order
    scenario_stepper()     an explorer scenario by seed or script
    roots_stepper()        a TDP MMU roots scenario under a kernel-version policy
    Explorer()             explore every interleaving, verdicts, replay a witness
"""

from .explorer import Explorer, verdict_table
from .stepper import (
    Stepper,
    removal_stepper,
    roots_stepper,
    scenario_stepper,
    seamcall_stepper,
    td_life_stepper,
    teardown_stepper,
)

__all__ = ["Explorer", "verdict_table", "Stepper", "removal_stepper", "roots_stepper",
           "scenario_stepper", "seamcall_stepper", "td_life_stepper", "teardown_stepper"]
