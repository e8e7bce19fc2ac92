"""Step sources: what a `Stepper` drives. One protocol, several model drivers.

A step source is any object with::

    title: str                 what is being stepped (shown above the buttons)
    reset() -> None            start again from the same initial state
    step() -> StepInfo         advance one step (raises `Finished` when `done`)
    done: bool                 nothing left to step
    trace: Trace               every event so far (the timeline panel reads it)
    module, tdr, kvm           model state for the panels (None when not applicable)
    panels: tuple[str, ...]    the panels that make sense for it ("timeline", "sept", ...)
    summary() -> str           a text summary (shown when done; used by golden cells)

Sources here:

    td_life.py    `TdLifeSource`: a TD built and torn down by KVM's real code path under a
                  teardown strategy, one SEAMCALL per step (`teardown_source`: teardown only)
    explorer.py   `ExplorerSource`: a registered explorer scenario run by script, seed or
                  witness choices, one actor step per step; the TDP MMU roots scenarios are
                  these too (`roots_source`)
    seamcalls.py  `SeamcallScriptSource`: SEAMCALLs in an order you choose
    removal.py    `RemovalSource`: BLOCK / TRACK / kick / REMOVE on a running TD, in an order
                  you choose
    step.py       `StepInfo` (what a step did), `call_chain`, `touched`, `td_states`

Each step records the kernel call chain that issued its SEAMCALL, read from the suspended
generators (`gi_yieldfrom`), so the widget can say "tdh_mem_range_block, issued by
kvm_gmem_release -> tdx_sept_remove_private_spte" with the source file and the docstring of
the innermost kernel function ("why?").
"""

from .explorer import ExplorerSource, roots_source
from .removal import KVM_REMOVAL, REMOVAL_OPS, RemovalSource
from .seamcalls import KVM_BUILD_ORDER, SCRIPT_CALLS, TEARDOWN_ORDER, SeamcallScriptSource
from .step import LEAF_WORDS, Finished, Frame, StepInfo, call_chain, td_states, touched
from .td_life import TdLifeSource, teardown_source

__all__ = ["Finished", "Frame", "StepInfo", "call_chain", "touched", "td_states",
           "TdLifeSource", "teardown_source", "ExplorerSource", "roots_source",
           "SeamcallScriptSource", "RemovalSource", "KVM_BUILD_ORDER", "TEARDOWN_ORDER",
           "SCRIPT_CALLS", "REMOVAL_OPS", "KVM_REMOVAL", "LEAF_WORDS"]
