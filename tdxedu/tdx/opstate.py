"""Which host SEAMCALL the module allows in which TD OP_STATE: the module's own table.

TDX module 1.5 `include/auto_gen/op_state_lookup.c` (`seamcall_state_lookup`, the same in
1.5.01 and 1.5.05) has one row per leaf number and one column per OP_STATE; the handlers that
call `check_state_map_tdcs_and_lock` (`src/common/helpers/helpers.c`) look their leaf up in it
and fail with TDX_OP_STATE_INCORRECT when the TD's current OP_STATE is not allowed. A leaf
with no row (TDH.MNG.CREATE, KEY.CONFIG, VPFLUSHDONE, KEY.FREEID, the PHYMEM leaves) never
makes the check; neither do VP.FLUSH and MNG.VPFLUSHDONE, which read OP_STATE themselves.

The rows below copy the module's columns 0..10 in order (`op_state_e` in `op_state_lookup.h`):
UNINITIALIZED, INITIALIZED, RUNNABLE, LIVE_EXPORT, PAUSED_EXPORT, POST_EXPORT, MEMORY_IMPORT,
STATE_IMPORT, POST_IMPORT, LIVE_IMPORT, FAILED_IMPORT. The model only reaches the first three
(no migration), so `allowed_op_states` reads those columns; the rest are kept so a reader can
check each row against the module file digit by digit.
"""

from __future__ import annotations

from .leaves import Leaf
from .td import OpState

OP_STATE_COLUMNS = (
    "UNINITIALIZED", "INITIALIZED", "RUNNABLE", "LIVE_EXPORT", "PAUSED_EXPORT", "POST_EXPORT",
    "MEMORY_IMPORT", "STATE_IMPORT", "POST_IMPORT", "LIVE_IMPORT", "FAILED_IMPORT",
)

# leaf -> the module's row, one digit per column above (1 = allowed).
SEAMCALL_STATE_LOOKUP: dict[Leaf, str] = {
    Leaf.TDH_VP_ENTER: "00110000010",
    Leaf.TDH_MNG_ADDCX: "10000000000",
    Leaf.TDH_MEM_PAGE_ADD: "01000000000",
    Leaf.TDH_MEM_SEPT_ADD: "01110011110",
    Leaf.TDH_VP_ADDCX: "01000001000",
    Leaf.TDH_MEM_PAGE_RELOCATE: "01111100110",
    Leaf.TDH_MEM_PAGE_AUG: "01110000010",
    Leaf.TDH_MEM_RANGE_BLOCK: "01111100110",
    Leaf.TDH_VP_CREATE: "01000001000",
    Leaf.TDH_MNG_RD: "01111111111",
    Leaf.TDH_MEM_RD: "01111111111",
    Leaf.TDH_MNG_WR: "01110011111",
    Leaf.TDH_MEM_WR: "01110011111",
    Leaf.TDH_MEM_PAGE_DEMOTE: "01111100110",
    Leaf.TDH_MR_EXTEND: "01000000000",
    Leaf.TDH_MR_FINALIZE: "01000000000",
    Leaf.TDH_VP_FLUSH: "11111111111",
    Leaf.TDH_MNG_INIT: "10000000000",
    Leaf.TDH_VP_INIT: "01000000000",
    Leaf.TDH_MEM_PAGE_PROMOTE: "01111100110",
    Leaf.TDH_MEM_SEPT_RD: "01111111111",
    Leaf.TDH_VP_RD: "01111111111",
    Leaf.TDH_MEM_PAGE_REMOVE: "01111100111",
    Leaf.TDH_MEM_SEPT_REMOVE: "01111111111",
    Leaf.TDH_MEM_TRACK: "01111111110",
    Leaf.TDH_MEM_RANGE_UNBLOCK: "01111100110",
    Leaf.TDH_VP_WR: "01110011111",
}


def allowed_op_states(leaf: Leaf) -> frozenset[OpState]:
    """The modelled OP_STATEs in which `leaf` passes the module's table (none without a row)."""
    row = SEAMCALL_STATE_LOOKUP.get(leaf, "0" * len(OP_STATE_COLUMNS))
    return frozenset(s for s in OpState if row[s] == "1")


# Precomputed per leaf: the check runs on every SEAMCALL of a TD's hot path.
ALLOWED: dict[Leaf, frozenset[OpState]] = {leaf: allowed_op_states(leaf) for leaf in Leaf}


def op_state_is_seamcall_allowed(leaf: Leaf, op_state: OpState) -> bool:
    """`op_state_is_seamcall_allowed` (module 1.5 `src/common/helpers/helpers.h`)."""
    return op_state in ALLOWED[leaf]


__all__ = ["SEAMCALL_STATE_LOOKUP", "OP_STATE_COLUMNS", "ALLOWED", "allowed_op_states",
           "op_state_is_seamcall_allowed"]
