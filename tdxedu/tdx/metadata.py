"""TDH.MNG.RD / TDH.MNG.WR and TDH.VP.RD / TDH.VP.WR: the host reads and writes TD and vCPU
metadata fields by field id, with the module's access checks.

Module 1.5.05 `src/vmm_dispatcher/api_calls/tdh_mng_rd_wr.c`, `tdh_vp_rd_wr.c` and
`src/common/metadata_handlers/metadata_generic.c` / `metadata_td.c` / `metadata_vp.c`, fields
from the generated tables `include/auto_gen/tdr_tdcs_fields_lookup.c`,
`tdvps_fields_lookup.c`, `td_vmcs_fields_lookup.c` (field ids and the production / debug read
and write masks copied per field). The model keeps a subset: the TD fields a lesson about the
lifecycle looks at (FATAL, LIFECYCLE_STATE, NUM_TDCX, CHLDCNT, HKID, OP_STATE, NUM_VCPUS,
NUM_ASSOC_VCPUS, ATTRIBUTES, TD_EPOCH, TD_CTLS, HP_LOCK_TIMEOUT) and the vCPU fields KVM
touches (`tdx_protected_apic_has_interrupt` reads VCPU_STATE_DETAILS; `tdx_vcpu_init` writes
the posted-interrupt vector and descriptor address and sets PIN_BASED_POSTED_INTR), plus a few
that show the access rules (VCPU_STATE and GUEST_RIP: debug TDs only). Any other field id is
TDX_METADATA_FIELD_ID_INCORRECT here, as an unknown one is in the module.

Order of checks (the module's): version (RD only: > 1 -> OPERAND_INVALID | RAX); the TDR (MNG)
or TDVPR (VP, then its TDR implicitly) shared; `check_state_map_tdcs_and_lock` with the
OP_STATE lock shared (rows [11] / [13] / [26] / [43]: not before TDH.MNG.INIT); VP only:
`map_tdvps` (TDCX_NUM_INCORRECT) and `check_and_associate_vcpu` (VCPU_READY else
VCPU_STATE_INCORRECT; associated with another LP -> VCPU_ASSOCIATED; else the vCPU becomes
associated with this LP, as VP.ENTER would make it); version 1 with the null field id ->
TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT; `md_check_as_single_element_id` (reserved bits,
LAST_ELEMENT_IN_FIELD, LAST_FIELD_IN_SEQUENCE -> FIELD_ID_INCORRECT); the field looked up by
class and field code (context forced, element size ignored) -> FIELD_ID_INCORRECT; read: the
read mask (debug mask when ATTRIBUTES.DEBUG) 0 -> FIELD_NOT_READABLE, R8 = value & mask;
write: write mask & RCX-side mask 0 -> FIELD_NOT_WRITABLE, a non-writable bit changed ->
FIELD_VALUE_NOT_VALID, field-specific rules, R8 = the old value. Version 1 reads return the
next field id in RDX; here "next" is the next field of the model's subset.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import status as st
from .core import Call, Result
from .leaves import Leaf
from .td import MIN_TDCX_PER_VCPU, VCPU_ACTIVE, VCPU_READY, VCPU_UNINITIALIZED

RCX = st.TDX_OPERAND_ID_RCX
OK = st.TDX_SUCCESS
MD_FIELD_ID_NA = (1 << 64) - 1
_ALL = (1 << 64) - 1
# md_field_id_t bits that must be 0 in a single-element id: RESERVED_0 (31:24),
# LAST_ELEMENT_IN_FIELD (37:34), LAST_FIELD_IN_SEQUENCE (46:38), RESERVED_1 (49:47),
# RESERVED_2 (55), RESERVED_3 (62).
_NOT_SINGLE = (0xFF << 24) | (0xF << 34) | (0x1FF << 38) | (0x7 << 47) | (1 << 55) | (1 << 62)
MIN_HP_LOCK_TIMEOUT_USEC = 10_000  # td_control_structures.h
MAX_HP_LOCK_TIMEOUT_USEC = 100_000_000
DEFAULT_HP_LOCK_TIMEOUT_USEC = 1_000_000
_VCPU_STATE_CODE = {VCPU_UNINITIALIZED: 0x0, VCPU_READY: 0x2, VCPU_ACTIVE: 0x4}  # tdx_tdvps.h


def _key(field_id: int) -> tuple[int, int]:
    """(CLASS_CODE bits 61:56, FIELD_CODE bits 23:0): what `md_find_entry_idx` matches."""
    return (field_id >> 56) & 0x3F, field_id & 0xFF_FFFF


@dataclass(frozen=True)
class Field:
    name: str
    field_id: int  # as in the generated lookup table
    prod_rd: int
    prod_wr: int
    dbg_rd: int
    dbg_wr: int
    read: object  # (module, td, vp) -> int
    write: object = None  # (module, td, vp, new_value, combined_mask) -> Status | None

    def masks(self, debug: bool) -> tuple[int, int]:
        return (self.dbg_rd, self.dbg_wr) if debug else (self.prod_rd, self.prod_wr)


def _write_hp_lock_timeout(m, td, vp, value: int, mask: int):
    """metadata_td.c special write: full 64-bit write only (WR_MASK_NOT_VALID), in usec within
    [MIN, MAX]_HP_LOCK_TIMEOUT_USEC (FIELD_VALUE_NOT_VALID)."""
    if mask != _ALL:
        return st.TDX_METADATA_WR_MASK_NOT_VALID
    if not MIN_HP_LOCK_TIMEOUT_USEC <= value <= MAX_HP_LOCK_TIMEOUT_USEC:
        return st.TDX_METADATA_FIELD_VALUE_NOT_VALID
    td.tdcs.hp_lock_timeout = value
    return None


def _vmcs_field(name: str, field_id: int, rd: int, wr: int, dbg_rd: int, dbg_wr: int,
                default: int = 0) -> Field:
    code = field_id & 0xFF_FFFF

    def read(m, td, vp):
        return vp.vmcs.get(code, default)

    def write(m, td, vp, value, mask):
        vp.vmcs[code] = value
        return None

    return Field(name, field_id, rd, wr, dbg_rd, dbg_wr, read, write)


_B8, _B16, _B32 = 0xFF, 0xFFFF, 0xFFFF_FFFF
TD_FIELDS = [
    Field("FATAL", 0x8010000000000001, _B8, 0, _B8, 0, lambda m, td, vp: int(td.fatal)),
    Field("NUM_TDCX", 0x8010000200000002, _B32, 0, _B32, 0,
          lambda m, td, vp: len(td.tdcx_pa)),
    Field("CHLDCNT", 0x8010000300000004, _ALL, 0, _ALL, 0, lambda m, td, vp: td.chldcnt),
    Field("LIFECYCLE_STATE", 0x8010000200000005, _B32, 0, _B32, 0,
          lambda m, td, vp: int(td.lifecycle)),
    Field("HKID", 0x8110000100000001, _B16, 0, _B16, 0, lambda m, td, vp: td.hkid),
    Field("NUM_VCPUS", 0x9010000200000001, _B32, 0, _B32, 0,
          lambda m, td, vp: td.tdcs.num_vcpus),
    Field("NUM_ASSOC_VCPUS", 0x9010000200000002, _B32, 0, _B32, 0,
          lambda m, td, vp: td.tdcs.num_assoc_vcpus),
    Field("OP_STATE", 0x9010000200000004, _B32, 0, _B32, 0,
          lambda m, td, vp: int(td.tdcs.op_state)),
    Field("HP_LOCK_TIMEOUT", 0x9110000300000011, _ALL, _ALL, _ALL, _ALL,
          lambda m, td, vp: td.tdcs.hp_lock_timeout, _write_hp_lock_timeout),
    Field("TD_CTLS", 0x9110000300000017, 0, 0, _ALL, 0, lambda m, td, vp: 0),
    Field("ATTRIBUTES", 0x1110000300000000, _ALL, 0, _ALL, 0,
          lambda m, td, vp: td.tdcs.attributes),
    Field("TD_EPOCH", 0x9210000300000000, _ALL, 0, _ALL, 0, lambda m, td, vp: td.tdcs.td_epoch),
]
VP_FIELDS = [
    _vmcs_field("VPID", 0x0024000100000000, 0, 0, _B16, 0),
    _vmcs_field("POSTED_INTR_NV", 0x0024000100000002, _B16, _B16, _B16, _B16),
    _vmcs_field("POSTED_INTR_DESC_ADDR", 0x0024000300002016, _ALL, _ALL & ~0x3F, _ALL,
                _ALL & ~0x3F),
    _vmcs_field("PIN_BASED_VM_EXEC_CONTROL", 0x0024000200004000, 0x80, 0x80, _B32, 0x80),
    _vmcs_field("GUEST_RIP", 0x002400030000681E, 0, 0, _ALL, _ALL, default=0xFFF0),
    Field("VCPU_STATE_DETAILS", 0x9120000300000100, _ALL, 0, _ALL, 0,
          lambda m, td, vp: 0),  # bit 0 VMXIP: no virtual interrupts are modelled
    Field("VCPU_STATE", 0xA020000000000000, 0, 0, _B8, 0,
          lambda m, td, vp: _VCPU_STATE_CODE[vp.state]),
    Field("VCPU_INDEX", 0xA020000200000002, _B32, 0, _B32, 0, lambda m, td, vp: vp.vcpu_index),
    Field("NUM_TDVPS_PAGES", 0xA020000000000003, _B8, 0, _B8, 0,
          lambda m, td, vp: 1 + len(vp.tdcx_pa)),
    Field("ASSOC_LPID", 0xA020000200000004, _B32, 0, _B32, 0,
          lambda m, td, vp: vp.assoc_lpid & _B32),
    Field("VCPU_EPOCH", 0xA020000300000006, _ALL, 0, _ALL, 0, lambda m, td, vp: vp.vcpu_epoch),
]
_BY_KEY = {
    "td": {_key(f.field_id): (i, f) for i, f in enumerate(TD_FIELDS)},
    "vp": {_key(f.field_id): (i, f) for i, f in enumerate(VP_FIELDS)},
}
_LIST = {"td": TD_FIELDS, "vp": VP_FIELDS}
FIELD_IDS = {f.name: f.field_id for f in TD_FIELDS + VP_FIELDS}


class MetadataMixin:
    """The four metadata leaves; `TdxModule` supplies the state."""

    def _md_access(self, ctx: str, td, vp, field_id: int, version: int, write: bool,
                   data: int, mask: int, leaf: str) -> Result:
        """The part both contexts share, after the TD (and vCPU) checks."""
        fields = _LIST[ctx]
        if not write and version > 0 and field_id == MD_FIELD_ID_NA:
            return Result(leaf, st.TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT,
                          rdx=fields[0].field_id)
        out_rdx = MD_FIELD_ID_NA if not write and version > 0 else 0
        if field_id & _NOT_SINGLE:
            return Result(leaf, st.TDX_METADATA_FIELD_ID_INCORRECT, rdx=out_rdx)
        found = _BY_KEY[ctx].get(_key(field_id))
        if found is None:
            return Result(leaf, st.TDX_METADATA_FIELD_ID_INCORRECT, rdx=out_rdx)
        index, f = found
        rd_mask, wr_mask = f.masks(bool(td.tdcs.attributes & 1))
        if not write:
            if rd_mask == 0:
                return Result(leaf, st.TDX_METADATA_FIELD_NOT_READABLE, rdx=out_rdx)
            if version > 0:
                out_rdx = fields[index + 1].field_id if index + 1 < len(fields) \
                    else MD_FIELD_ID_NA
            return Result(leaf, OK, rdx=out_rdx, r8=f.read(self, td, vp) & rd_mask)
        old = f.read(self, td, vp)
        combined = wr_mask & mask
        if combined == 0:
            return Result(leaf, st.TDX_METADATA_FIELD_NOT_WRITABLE)
        forbidden = mask & ~wr_mask
        if old & forbidden != data & forbidden:
            return Result(leaf, st.TDX_METADATA_FIELD_VALUE_NOT_VALID)
        err = f.write(self, td, vp, (old & ~combined) | (data & combined), combined)
        if err:
            return Result(leaf, err)
        return Result(leaf, OK, r8=old)

    # TDH.MNG.RD / TDH.MNG.WR --------------------------------------------------------------
    def _mng_rdwr(self, tdr: int, field_id: int, write: bool, data: int, mask: int,
                  version: int, lp: int):
        leaf = "TDH.MNG.WR" if write else "TDH.MNG.RD"
        call = Call(f"{leaf}@LP{lp}")
        try:
            if version > 1:
                return Result(leaf, st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX)
            td, err = self._lock_tdr(call, tdr, RCX)
            if err:
                return Result(leaf, err)
            err = self._td_state_error(call, td, Leaf.TDH_MNG_WR if write else Leaf.TDH_MNG_RD)
            if err:
                return Result(leaf, err)
            yield from ()
            return self._md_access("td", td, None, field_id, version, write, data, mask, leaf)
        finally:
            call.release()

    def _h_tdh_mng_rd(self, tdr: int, field_id: int, version: int = 0, *, lp: int):
        return (yield from self._mng_rdwr(tdr, field_id, False, 0, 0, version, lp))

    def _h_tdh_mng_wr(self, tdr: int, field_id: int, data: int, mask: int, *, lp: int):
        return (yield from self._mng_rdwr(tdr, field_id, True, data, mask, 0, lp))

    # TDH.VP.RD / TDH.VP.WR ----------------------------------------------------------------
    def _vp_rdwr(self, tdvpr: int, field_id: int, write: bool, data: int, mask: int,
                 version: int, lp: int):
        leaf = "TDH.VP.WR" if write else "TDH.VP.RD"
        call = Call(f"{leaf}@LP{lp}")
        try:
            if not write and version > 1:
                return Result(leaf, st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX)
            vp, err = self._lock_vcpu(call, tdvpr, RCX)
            if err:
                return Result(leaf, err)
            td = vp.td
            err = self._td_state_error(call, td, Leaf.TDH_VP_WR if write else Leaf.TDH_VP_RD)
            if err:
                return Result(leaf, err)
            if len(vp.tdcx_pa) < MIN_TDCX_PER_VCPU:  # map_tdvps
                return Result(leaf, st.TDX_TDCX_NUM_INCORRECT)
            if vp.state != VCPU_READY:  # check_and_associate_vcpu (no VCPU_DISABLED here)
                return Result(leaf, st.TDX_VCPU_STATE_INCORRECT)
            if vp.assoc_lpid not in (-1, lp):  # associate_vcpu
                return Result(leaf, st.TDX_VCPU_ASSOCIATED)
            yield from ()
            self._associate(vp, lp)
            return self._md_access("vp", td, vp, field_id, version, write, data, mask, leaf)
        finally:
            call.release()

    def _h_tdh_vp_rd(self, tdvpr: int, field_id: int, version: int = 0, *, lp: int):
        return (yield from self._vp_rdwr(tdvpr, field_id, False, 0, 0, version, lp))

    def _h_tdh_vp_wr(self, tdvpr: int, field_id: int, data: int, mask: int, *, lp: int):
        return (yield from self._vp_rdwr(tdvpr, field_id, True, data, mask, 0, lp))


__all__ = ["MetadataMixin", "TD_FIELDS", "VP_FIELDS", "FIELD_IDS", "MD_FIELD_ID_NA"]
