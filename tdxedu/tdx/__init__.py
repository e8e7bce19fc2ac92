"""The TDX module (SEAM side): status codes, leaves, PAMT, Secure EPT, TD/vCPU control
structures, try-locks, KOT/HKID, SEAMCALL and guest TDCALL handlers. Knows nothing of KVM."""

from . import status
from .core import Result
from .leaves import Leaf, TdcallLeaf
from .module import TdxModule
from .pamt import KEYID_SHIFT, PAGE_SIZE, PageType
from .sept import SeptState
from .status import *  # noqa: F403  (TDX_SUCCESS, TDX_OPERAND_BUSY, ... like the kernel)
from .status import Status, decode, describe
from .td import KotState, Lifecycle, OpState, VcpuState

__all__ = [
    "TdxModule",
    "Result",
    "Status",
    "decode",
    "describe",
    "Leaf",
    "TdcallLeaf",
    "PageType",
    "SeptState",
    "Lifecycle",
    "OpState",
    "KotState",
    "VcpuState",
    "KEYID_SHIFT",
    "PAGE_SIZE",
    *status.__all__,
]
