"""SEAMCALL and TDCALL leaf numbers.

Bits 15:0 of RAX select the leaf, bits 23:16 its version (the kernel issues TDH.VP.INIT as
version 1). Source: [K-LEAF] (kernel `arch/x86/virt/vmx/tdx/tdx.h`), [M15] (module 1.5.01
`include/tdx_api_defs.h`); PAMT.ADD/REMOVE: [V6-03] (Dynamic PAMT series v6).
"""

from enum import IntEnum

TDX_VERSION_SHIFT = 16


class Leaf(IntEnum):
    TDH_VP_ENTER = 0
    TDH_MNG_ADDCX = 1
    TDH_MEM_PAGE_ADD = 2
    TDH_MEM_SEPT_ADD = 3
    TDH_VP_ADDCX = 4
    TDH_MEM_PAGE_RELOCATE = 5
    TDH_MEM_PAGE_AUG = 6
    TDH_MEM_RANGE_BLOCK = 7
    TDH_MNG_KEY_CONFIG = 8
    TDH_MNG_CREATE = 9
    TDH_VP_CREATE = 10
    TDH_MNG_RD = 11
    TDH_MEM_RD = 12
    TDH_MNG_WR = 13
    TDH_MEM_WR = 14
    TDH_MEM_PAGE_DEMOTE = 15
    TDH_MR_EXTEND = 16
    TDH_MR_FINALIZE = 17
    TDH_VP_FLUSH = 18
    TDH_MNG_VPFLUSHDONE = 19
    TDH_MNG_KEY_FREEID = 20
    TDH_MNG_INIT = 21
    TDH_VP_INIT = 22
    TDH_MEM_PAGE_PROMOTE = 23
    TDH_PHYMEM_PAGE_RDMD = 24
    TDH_MEM_SEPT_RD = 25
    TDH_VP_RD = 26
    TDH_MNG_KEY_RECLAIMID = 27
    TDH_PHYMEM_PAGE_RECLAIM = 28
    TDH_MEM_PAGE_REMOVE = 29
    TDH_MEM_SEPT_REMOVE = 30
    TDH_SYS_KEY_CONFIG = 31
    TDH_SYS_INFO = 32
    TDH_SYS_INIT = 33
    TDH_SYS_RD = 34
    TDH_SYS_LP_INIT = 35
    TDH_SYS_TDMR_INIT = 36
    TDH_SYS_RDALL = 37
    TDH_MEM_TRACK = 38
    TDH_MEM_RANGE_UNBLOCK = 39
    TDH_PHYMEM_CACHE_WB = 40
    TDH_PHYMEM_PAGE_WBINVD = 41
    TDH_MEM_SEPT_WR = 42
    TDH_VP_WR = 43
    TDH_SYS_LP_SHUTDOWN = 44
    TDH_SYS_CONFIG = 45
    TDH_PHYMEM_PAMT_ADD = 58
    TDH_PHYMEM_PAMT_REMOVE = 59

    @property
    def spelled(self) -> str:
        """The name as the specs spell it: TDH.MEM.PAGE.REMOVE."""
        return self.name.replace("_", ".")


class TdcallLeaf(IntEnum):
    """Guest-side TDCALL leaves we model ([M15] `include/tdx_api_defs.h`)."""

    TDG_MEM_PAGE_ACCEPT = 6
    TDG_MEM_PAGE_ATTR_RD = 23
    TDG_MEM_PAGE_ATTR_WR = 24


# TDH.PHYMEM.CACHE.WB's RCX ([M15] `tdh_phymem_cache_wb.c`)
TDH_PHYMEM_CACHEWB_START_CMD = 0
TDH_PHYMEM_CACHEWB_RESUME_CMD = 1
