"""SEAMCALL completion status codes.

Bits 63:32 of RAX hold the status class and code, bits 31:0 the details, usually an operand id
that names the busy or invalid resource. Bit 63 marks an error, bit 62 a non-recoverable one.
Values: [K-ERRNO] (kernel `arch/x86/include/asm/shared/tdx_errno.h`), [M15] (TDX module 1.5.01
`include/auto_gen/tdx_error_codes_defs.h`), [M20-ERR] (module 2.0, the Dynamic PAMT codes).
"""

from __future__ import annotations

TDX_SEAMCALL_STATUS_MASK = 0xFFFF_FFFF_0000_0000
_OPERAND_MASK = 0xFFFF_FFFF
_U64 = (1 << 64) - 1

# name -> value of the status half (bits 63:32). Where the kernel header and module 1.5.01
# disagree (two NON_RECOVERABLE codes) we follow the module, which is what we simulate.
STATUS_CODES: dict[str, int] = {
    "TDX_SUCCESS": 0x0000000000000000,
    "TDX_NON_RECOVERABLE_VCPU": 0x4000000100000000,
    "TDX_NON_RECOVERABLE_TD": 0x6000000200000000,  # kernel header: 0x4000000200000000
    "TDX_INTERRUPTED_RESUMABLE": 0x8000000300000000,
    "TDX_INTERRUPTED_RESTARTABLE": 0x8000000400000000,
    "TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE": 0x6000000500000000,
    "TDX_NON_RECOVERABLE_TD_WRONG_APIC_MODE": 0xE000000700000000,  # kernel: 0x6000000700000000
    "TDX_OPERAND_INVALID": 0xC000010000000000,
    "TDX_OPERAND_ADDR_RANGE_ERROR": 0xC000010100000000,
    "TDX_OPERAND_BUSY": 0x8000020000000000,
    "TDX_PREVIOUS_TLB_EPOCH_BUSY": 0x8000020100000000,
    "TDX_SYS_BUSY": 0x8000020200000000,
    "TDX_RND_NO_ENTROPY": 0x8000020300000000,
    "TDX_OPERAND_BUSY_HOST_PRIORITY": 0x8000020400000000,
    "TDX_PAGE_METADATA_INCORRECT": 0xC000030000000000,
    "TDX_PAGE_NOT_FREE": 0xC000030300000000,
    "TDX_HPA_RANGE_NOT_FREE": 0xC000030400000000,
    "TDX_NO_PAMT_PAGE_PAIR": 0xC000030500000000,
    "TDX_PAMT_PAGE_NOT_EMPTY": 0xC000030600000000,
    "TDX_INTERRUPTED_PAMT": 0x8000030700000000,
    "TDX_MISSING_PAMT_PAGE_PAIR": 0x8000030800000000,
    "TDX_TD_ASSOCIATED_PAGES_EXIST": 0xC000040000000000,
    "TDX_TD_FATAL": 0xE000060400000000,
    "TDX_TD_NON_DEBUG": 0xC000060500000000,
    "TDX_TDCS_NOT_ALLOCATED": 0xC000060600000000,
    "TDX_LIFECYCLE_STATE_INCORRECT": 0xC000060700000000,
    "TDX_OP_STATE_INCORRECT": 0xC000060800000000,
    "TDX_NO_VCPUS": 0xC000060900000000,
    "TDX_TDCX_NUM_INCORRECT": 0xC000061000000000,
    "TDX_X2APIC_ID_NOT_UNIQUE": 0xC000062100000000,  # module 1.5.05 only
    "TDX_VCPU_STATE_INCORRECT": 0xC000070000000000,
    "TDX_TSC_ROLLBACK": 0xC000070600000000,  # TDH.VP.ENTER checks not modelled (host TSC/MSRs)
    "TDX_VCPU_ASSOCIATED": 0x8000070100000000,
    "TDX_VCPU_NOT_ASSOCIATED": 0x8000070200000000,
    "TDX_MAX_VCPUS_EXCEEDED": 0xC000070500000000,
    "TDX_KEY_GENERATION_FAILED": 0x8000080000000000,
    "TDX_TD_KEYS_NOT_CONFIGURED": 0x8000081000000000,
    "TDX_KEY_STATE_INCORRECT": 0xC000081100000000,
    "TDX_KEY_CONFIGURED": 0x0000081500000000,
    "TDX_WBCACHE_NOT_COMPLETE": 0x8000081700000000,
    "TDX_HKID_NOT_FREE": 0xC000082000000000,
    "TDX_NO_HKID_READY_TO_WBCACHE": 0x0000082100000000,
    "TDX_WBCACHE_RESUME_ERROR": 0xC000082300000000,
    "TDX_FLUSHVP_NOT_DONE": 0x8000082400000000,
    "TDX_LIMIT_CPUID_MAXVAL_SET": 0xC000090100000000,
    "TDX_INCONSISTENT_MSR": 0xC000092000000000,
    "TDX_INCORRECT_MSR_VALUE": 0xC000092100000000,
    "TDX_EPT_WALK_FAILED": 0xC0000B0000000000,
    "TDX_EPT_ENTRY_FREE": 0xC0000B0100000000,
    "TDX_EPT_ENTRY_NOT_FREE": 0xC0000B0200000000,
    "TDX_EPT_ENTRY_NOT_PRESENT": 0xC0000B0300000000,
    "TDX_EPT_ENTRY_NOT_LEAF": 0xC0000B0400000000,
    "TDX_EPT_ENTRY_LEAF": 0xC0000B0500000000,
    "TDX_GPA_RANGE_NOT_BLOCKED": 0xC0000B0600000000,
    "TDX_GPA_RANGE_ALREADY_BLOCKED": 0x00000B0700000000,
    "TDX_TLB_TRACKING_NOT_DONE": 0xC0000B0800000000,
    # module `tdx_error_codes_defs.h`, kernel tdx_errno.h (S-EPT huge-page series)
    "TDX_EPT_INVALID_PROMOTE_CONDITIONS": 0xC0000B0900000000,
    "TDX_PAGE_ALREADY_ACCEPTED": 0x00000B0A00000000,
    "TDX_PAGE_SIZE_MISMATCH": 0xC0000B0B00000000,
    "TDX_GPA_RANGE_BLOCKED": 0xC0000B0C00000000,
    "TDX_EPT_ENTRY_STATE_INCORRECT": 0xC0000B0D00000000,
    "TDX_EPT_PAGE_NOT_FREE": 0xC0000B0E00000000,
    "TDX_L2_SEPT_WALK_FAILED": 0xC0000B0F00000000,  # L2 VMs: not modelled
    "TDX_PAGE_ATTR_INVALID": 0xC0000B1100000000,
    "TDX_L2_SEPT_PAGE_NOT_PROVIDED": 0xC0000B1200000000,
    "TDX_METADATA_FIELD_ID_INCORRECT": 0xC0000C0000000000,
    "TDX_METADATA_FIELD_NOT_WRITABLE": 0xC0000C0100000000,
    "TDX_METADATA_FIELD_NOT_READABLE": 0xC0000C0200000000,
    "TDX_METADATA_FIELD_VALUE_NOT_VALID": 0xC0000C0300000000,
    "TDX_METADATA_WR_MASK_NOT_VALID": 0xC0000C0A00000000,
    "TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT": 0x00000C0B00000000,
}

# Software-defined values the kernel uses for a SEAMCALL that never reached the module
# (arch/x86/include/asm/tdx.h): whole 64-bit values, matched before the class/code split.
SOFTWARE_CODES: dict[str, int] = {
    "TDX_SEAMCALL_VMFAILINVALID": 0x8000FF00FFFF0000,
    "TDX_SEAMCALL_GP": 0x8000FF000000000D,
    "TDX_SEAMCALL_UD": 0x8000FF0000000006,
    "TDX_SW_ERROR": 0x8000FF0000000000,
}

# Operand ids (bits 31:0). Kernel names where the kernel defines one (TDX_OPERAND_ID_RCX, _TDR,
# _SEPT, _TD_EPOCH), the module's OPERAND_ID_* otherwise ([K-ERRNO], [M15]).
OPERAND_IDS: dict[str, int] = {
    "TDX_OPERAND_ID_RAX": 0x00,  # module OPERAND_ID_RAX: the leaf/version in RAX itself
    "TDX_OPERAND_ID_RCX": 0x01,
    "TDX_OPERAND_ID_RDX": 0x02,
    "TDX_OPERAND_ID_R8": 0x08,
    "TDX_OPERAND_ID_R9": 0x09,
    "TDX_OPERAND_ID_TDR": 0x80,
    "TDX_OPERAND_ID_TDVPR": 0x82,
    "TDX_OPERAND_ID_TDCS": 0x90,
    "TDX_OPERAND_ID_SEPT": 0x92,
    "TDX_OPERAND_ID_SEPT_ENTRY": 0x93,
    "TDX_OPERAND_ID_TD_EPOCH": 0xA9,
    "TDX_OPERAND_ID_OP_STATE": 0xAC,
    "TDX_OPERAND_ID_KOT": 0xBA,
    "TDX_OPERAND_ID_KET": 0xBB,
    "TDX_OPERAND_ID_WBCACHE": 0xBC,
}

_CODE_NAMES = {v: k for k, v in STATUS_CODES.items()}
_SW_NAMES = {v: k for k, v in SOFTWARE_CODES.items()}
_OPERAND_NAMES = {v: k for k, v in OPERAND_IDS.items()}


class Status(int):
    """A SEAMCALL completion status: an `int` whose `str()` is the kernel's macro spelling.

    `Status(0x8000020000000092)` prints as `TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT`.
    Comparison is on the whole value; `.code` is the status half the kernel compares after
    masking with TDX_SEAMCALL_STATUS_MASK (KVM's `tdx_operand_busy()`).
    """

    def __new__(cls, value: int = 0):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"Status needs an int, got {type(value).__name__}")
        if not 0 <= value <= _U64:
            raise ValueError(f"Status must fit in 64 bits, got {value:#x}")
        self = super().__new__(cls, value)
        # Bit 63: the module reports a failure (TDX_GPA_RANGE_ALREADY_BLOCKED is not one).
        # Stored, not a property: KVM tests it after every SEAMCALL on the hot path.
        self.is_error = value >> 63 == 1
        return self

    def __reduce__(self):
        return (Status, (int(self),))

    @property
    def code(self) -> Status:
        """The status half (bits 63:32), operand id cleared."""
        return Status(int(self) & TDX_SEAMCALL_STATUS_MASK)

    @property
    def operand_id(self) -> int:
        return int(self) & _OPERAND_MASK

    @property
    def is_non_recoverable(self) -> bool:
        return bool((int(self) >> 62) & 1)

    @property
    def name(self) -> str:
        if int(self) in _SW_NAMES:
            return _SW_NAMES[int(self)]
        code = int(self) & TDX_SEAMCALL_STATUS_MASK
        return _CODE_NAMES.get(code, f"TDX_UNKNOWN_STATUS_{code >> 32:#010x}")

    def matches(self, other: int) -> bool:
        """True when the status halves are equal, as KVM compares after masking."""
        return (self & TDX_SEAMCALL_STATUS_MASK) == (other & TDX_SEAMCALL_STATUS_MASK)

    def __or__(self, other):
        if isinstance(other, int) and not isinstance(other, bool):
            return Status(int(self) | int(other))
        return NotImplemented

    __ror__ = __or__

    def __str__(self) -> str:
        if int(self) in _SW_NAMES:
            return _SW_NAMES[int(self)]
        op = self.operand_id
        if not op:
            return self.name
        return f"{self.name} | {_OPERAND_NAMES.get(op, f'{op:#x}')}"

    def __repr__(self) -> str:
        return f"Status({int(self):#018x}: {self})"

    def __format__(self, spec: str) -> str:
        return format(int(self), spec) if spec else str(self)


def decode(value: int) -> Status:
    """Decode any 64-bit RAX value, e.g. one copied from a kernel log line."""
    if isinstance(value, str):
        raise TypeError("decode() needs an int; for text use decode(int(text, 16))")
    return Status(value)


def describe(value: int) -> str:
    """A one-paragraph explanation of a status for lessons and the CLI."""
    s = decode(value)
    cls = "error" if s.is_error else "not an error"
    if s.is_non_recoverable:
        cls += ", non-recoverable"
    op = s.operand_id
    opname = _OPERAND_NAMES.get(op, f"{op:#x}") if op else "none"
    return f"{int(s):#018x} = {s}: status {s.name} ({cls}); operand id {opname}"


def status_outcome(status: str | None) -> str | None:
    """Classify a trace event's status text: "ok", "info" (not an error), "busy", "error",
    or None when the event has no status. Text such as ``TDX_SUCCESS (EPT_VIOLATION)`` or
    ``TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT`` comes from `str(Status)` in `tdxedu.tdx`."""
    if status is None:
        return None
    name = status.split(" ", 1)[0]
    if name == "TDX_SUCCESS":
        return "ok"
    value = STATUS_CODES.get(name, SOFTWARE_CODES.get(name))
    if value is None:  # a KVM-side status (RET_PF_RETRY, -EBUSY, ...): not a module error
        return "info"
    if not value >> 63:
        return "info"
    return "busy" if "BUSY" in name else "error"


# Module-level constants named like the kernel macros: TDX_SUCCESS, TDX_OPERAND_BUSY, ...
for _n, _v in {**STATUS_CODES, **SOFTWARE_CODES}.items():
    globals()[_n] = Status(_v)
for _n, _v in OPERAND_IDS.items():
    globals()[_n] = _v
del _n, _v

__all__ = [
    "Status",
    "decode",
    "describe",
    "status_outcome",
    "STATUS_CODES",
    "SOFTWARE_CODES",
    "OPERAND_IDS",
    "TDX_SEAMCALL_STATUS_MASK",
    *STATUS_CODES,
    *SOFTWARE_CODES,
    *OPERAND_IDS,
]
