"""Status: str / decode / operand_id / is_error for the values of [K-ERRNO] and [M15]."""

import pytest

from tdxedu.tdx import status as st
from tdxedu.tdx.status import Status, decode, describe

# (raw value, str(), operand id, is_error) -- values from [K-ERRNO] and [M15]
# `tdx_error_codes_defs.h` (composites: BUSY on the S-EPT tree, the epoch, an entry).
CASES = [
    (0x0000000000000000, "TDX_SUCCESS", 0, False),
    (0x8000020000000092, "TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT", 0x92, True),
    (0x80000200000000A9, "TDX_OPERAND_BUSY | TDX_OPERAND_ID_TD_EPOCH", 0xA9, True),
    (0x8000020000000001, "TDX_OPERAND_BUSY | TDX_OPERAND_ID_RCX", 0x01, True),
    (0xC0000B0800000001, "TDX_TLB_TRACKING_NOT_DONE | TDX_OPERAND_ID_RCX", 0x01, True),
    (0xC0000B0D00000001, "TDX_EPT_ENTRY_STATE_INCORRECT | TDX_OPERAND_ID_RCX", 0x01, True),
    (0x00000B0700000000, "TDX_GPA_RANGE_ALREADY_BLOCKED", 0, False),
    (0x0000082100000000, "TDX_NO_HKID_READY_TO_WBCACHE", 0, False),
    (0x0000081500000000, "TDX_KEY_CONFIGURED", 0, False),
    (0x8000082400000000, "TDX_FLUSHVP_NOT_DONE", 0, True),
    (0xC000060700000000, "TDX_LIFECYCLE_STATE_INCORRECT", 0, True),
    (0xC000040000000000, "TDX_TD_ASSOCIATED_PAGES_EXIST", 0, True),
    (0x8000000300000000, "TDX_INTERRUPTED_RESUMABLE", 0, True),
    (0xC000082300000000, "TDX_WBCACHE_RESUME_ERROR", 0, True),
    (0x8000020400000001, "TDX_OPERAND_BUSY_HOST_PRIORITY | TDX_OPERAND_ID_RCX", 0x01, True),
    (0x80000200000000BA, "TDX_OPERAND_BUSY | TDX_OPERAND_ID_KOT", 0xBA, True),
    (0x8000FF000000000D, "TDX_SEAMCALL_GP", 0x0D, True),  # [K-ASM] software-defined
    (0x8000FF00FFFF0000, "TDX_SEAMCALL_VMFAILINVALID", 0xFFFF0000, True),
]


@pytest.mark.parametrize("raw,text,op,err", CASES, ids=[c[1] for c in CASES])
def test_status_decode(raw, text, op, err):
    s = decode(raw)
    assert isinstance(s, Status) and int(s) == raw
    assert str(s) == text
    assert s.operand_id == op
    assert s.is_error is err
    assert f"{raw:#018x}" in describe(raw)


def test_constants_compose_like_kernel_macros():
    # [K616] tests this value (the pre-finalize premap case): TDX_EPT_ENTRY_STATE_INCORRECT |
    # TDX_OPERAND_ID_RCX = 0xC0000B0D00000001
    v = st.TDX_EPT_ENTRY_STATE_INCORRECT | st.TDX_OPERAND_ID_RCX
    assert isinstance(v, Status) and int(v) == 0xC0000B0D00000001
    # KVM compares the masked status half only ([K616] tdx_operand_busy())
    assert Status(0x8000020000000092).matches(st.TDX_OPERAND_BUSY)
    assert Status(0x8000020000000092).code == st.TDX_OPERAND_BUSY
    assert not Status(0x8000020100000000).matches(st.TDX_OPERAND_BUSY)


@pytest.mark.parametrize(
    "name", ["TDX_NON_RECOVERABLE_TD", "TDX_NON_RECOVERABLE_TD_WRONG_APIC_MODE"]
)
def test_module_values_where_kernel_differs(name):
    # [K-ERRNO] and [M15] differ here; module 1.5.01 values are modelled (0x6000000200000000,
    # 0xE000000700000000)
    expected = {"TDX_NON_RECOVERABLE_TD": 0x6000000200000000,
                "TDX_NON_RECOVERABLE_TD_WRONG_APIC_MODE": 0xE000000700000000}[name]
    assert int(getattr(st, name)) == expected
    assert getattr(st, name).is_non_recoverable


@pytest.mark.parametrize("bad", ["0x8000020000000000", 1.5, None, True])
def test_status_rejects_non_int(bad):
    with pytest.raises(TypeError, match="int"):
        decode(bad)


def test_status_rejects_out_of_range():
    with pytest.raises(ValueError):
        Status(1 << 64)
    with pytest.raises(ValueError):
        Status(-1)
