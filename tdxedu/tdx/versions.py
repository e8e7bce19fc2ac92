"""TDX module versions the model knows, and where they differ for the leaves it models.

The model follows **TDX 1.5.05** (Intel's TDX 1.5 source tree; niooss-ledger/tdx-module commit
`f99767b`, "TDX 1.5.05") unless `TdxModule(module_version="1.5.01")` asks for the earlier
release (commit `f9acbbf`, tag TDX_1.5.01 of intel/tdx-module). `VERSION_DIFFERENCES` lists
every difference between the two trees in the handlers of modelled leaves (found by diffing
`src/vmm_dispatcher/api_calls/`, `src/td_dispatcher/`, `src/td_transitions/`,
`src/common/helpers/` and `include/auto_gen/` between the two commits), with what the model
does about it. `tdxedu versions` prints the table.
"""

from __future__ import annotations

from dataclasses import dataclass

MODULE_VERSIONS = ("1.5.01", "1.5.05")
DEFAULT_MODULE_VERSION = "1.5.05"
COMMITS = {"1.5.01": "f9acbbf", "1.5.05": "f99767b"}


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def check_version(version) -> str:
    """The version string, or a ValueError that lists the known ones."""
    if version not in MODULE_VERSIONS:
        raise ValueError(f"module_version must be one of {', '.join(MODULE_VERSIONS)}, "
                         f"got {version!r}")
    return version


@dataclass(frozen=True)
class VersionDifference:
    leaf: str
    file: str  # module file, relative to the tree's root
    check: str
    v1_5_01: str
    v1_5_05: str
    modelled: str  # "yes: ..." (both versions selectable) or "no: ..."


VERSION_DIFFERENCES: tuple[VersionDifference, ...] = (
    VersionDifference(
        "TDH.MEM.RANGE.UNBLOCK", "src/vmm_dispatcher/api_calls/tdh_mem_range_unblock.c",
        "block epoch of the entry not yet TLB-tracked",
        "TDX_TLB_TRACKING_NOT_DONE | SEPT (operand 0x92, OPERAND_ID_SEPT_TREE)",
        "TDX_TLB_TRACKING_NOT_DONE | RCX (operand 0x01), as PAGE.REMOVE and SEPT.REMOVE",
        "yes: `module_version` selects the operand id"),
    VersionDifference(
        "TDH.MEM.TRACK", "src/vmm_dispatcher/api_calls/tdh_mem_track.c",
        "TD_EPOCH reaches 2^63 - 1 after the increment",
        "no check", "FATAL_ERROR (the module shuts down)",
        "no: needs 2^63 TRACKs"),
    VersionDifference(
        "TDH.VP.ENTER", "src/td_transitions/tdh_vp_enter.c",
        "guest extended state or a guest MSR fails to load",
        "TD exit with TDX_NON_RECOVERABLE_TD (TDX_SUCCESS for a debug TD)",
        "TD exit with TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE",
        "no: guest register state is not modelled"),
    VersionDifference(
        "TDH.VP.ENTER", "src/td_transitions/tdh_vp_enter.c",
        "when TDVPS.STATE becomes VCPU_ACTIVE",
        "before the guest state is restored", "just before the VM entry",
        "no: not observable by the host (no failure can happen in between in the model)"),
)


def format_versions() -> str:
    """The table as text, for the CLI and lessons."""
    lines = [f"TDX module versions: {', '.join(f'{v} ({COMMITS[v]})' for v in MODULE_VERSIONS)}"
             f"; the model follows {DEFAULT_MODULE_VERSION} by default."]
    for d in VERSION_DIFFERENCES:
        lines += ["", f"{d.leaf}  ({d.file})", f"  check:  {d.check}",
                  f"  1.5.01: {d.v1_5_01}", f"  1.5.05: {d.v1_5_05}", f"  model:  {d.modelled}"]
    return "\n".join(lines)


__all__ = ["MODULE_VERSIONS", "DEFAULT_MODULE_VERSION", "COMMITS", "VERSION_DIFFERENCES",
           "VersionDifference", "format_versions", "check_version", "version_key"]
