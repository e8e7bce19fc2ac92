"""Lesson 01 (SEAMCALLs and the TD lifecycle): the exercise checkers and their hidden
solutions."""

from __future__ import annotations

from ..tdx.status import decode
from .exercises import Check, Solution, _wrong
from .exercises import show_solution as _show_solution


# --- 01: decode a status, order the build -----------------------------------------------------
def check_decode(value: int, answer: str) -> Check:
    """Name the status in RAX the way the kernel prints it, e.g.
    ``"TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT"``."""
    if not isinstance(answer, str):
        return _wrong(f"answer with a string such as 'TDX_SUCCESS', got {answer!r}")
    real = str(decode(value))
    norm = " | ".join(p.strip() for p in answer.upper().split("|"))
    if norm == real:
        return Check(True, f"{value:#018x} = {real}")
    if norm.split(" | ")[0] == real.split(" | ")[0]:
        return _wrong("the status class is right; now name the operand id in bits 31:0")
    return _wrong("look at bits 63:32 for the status and bits 31:0 for the operand id")


def run_build(calls):
    from ..steps import SeamcallScriptSource

    src = SeamcallScriptSource(calls)
    while not src.done:
        src.step()
    return src


def check_build_order(calls) -> Check:
    """Order SEAMCALLs so the TD is RUNNABLE and its vCPU has entered, with no error."""
    from ..tdx.td import Lifecycle, OpState

    try:
        src = run_build(calls)
    except (ValueError, TypeError) as exc:
        return _wrong(str(exc))
    errors = src.errors()
    if errors:
        e = errors[0]
        return _wrong(f"{e.op} failed with {e.status}: what must happen before it?")
    bad = src.module.check_invariants()
    if bad:
        return _wrong("the module's invariants fail: " + "; ".join(bad))
    td = src.module.tds.get(src.tdr)
    if td is None or td.lifecycle != Lifecycle.TD_KEYS_CONFIGURED or td.tdcs is None \
            or td.tdcs.op_state != OpState.RUNNABLE:
        return _wrong("no error, but the TD is not RUNNABLE yet: which call is missing?")
    if not src.vp or not src.module.vcpus[src.vp].in_guest:
        return _wrong("the TD is RUNNABLE but no vCPU is in the guest yet")
    return Check(True, f"{len(src.calls)} calls, TD RUNNABLE, vCPU in the guest, "
                 "invariants hold")


# --- solutions (hidden in the notebook) -------------------------------------------------------
SOLUTIONS = {
    "decode_sept_busy": ("0x8000020000000092", "TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT"),
    "decode_state": ("0xC0000B0D00000001", "TDX_EPT_ENTRY_STATE_INCORRECT | TDX_OPERAND_ID_RCX"),
    "build_order": ["tdh_mng_create", "tdh_mng_key_config", "tdh_mng_addcx", "tdh_mng_init",
                    "tdh_vp_create", "tdh_vp_addcx", "tdh_vp_init", "tdh_mem_sept_add",
                    "tdh_mem_page_add", "tdh_mr_extend", "tdh_mr_finalize", "tdh_vp_enter"],
}


def show_solution(name: str) -> Solution:
    return _show_solution(name, SOLUTIONS)


__all__ = ["check_decode", "run_build", "check_build_order", "SOLUTIONS", "show_solution"]
