"""TD and vCPU control structures kept by the TDX module, and the Key Ownership Table.

TDR: lifecycle, HKID, fatal flag, child count, TDCX (TDCS page) list, per-package key-config
bitmap. TDCS: OP_STATE, the TD epoch and its two refcounts, the number of associated vCPUs, the
S-EPT. TDVPS: the vCPU, its association with a logical processor and its epoch.
Source: [M15] (module 1.5.01 `src/common/data_structures/td_control_structures.h`,
`tdx_global_data.h`; epochs as `tdh_mem_track.c` and `td_exit.c` use them; 0-step mitigation
as `td_exit_stepping.c` counts it, with the reason for its threshold in [Y-RFC]).
"""

from __future__ import annotations

from enum import IntEnum

from .locks import SharexHpLock, SharexLock
from .sept import SecureEpt


class Lifecycle(IntEnum):
    """`td_lifecycle_state_t` ([M15])."""

    TD_HKID_ASSIGNED = 0
    TD_KEYS_CONFIGURED = 1
    TD_BLOCKED = 2
    TD_TEARDOWN = 3


# Plain names for the members, for hot paths (see `tdx.pamt.PT_NDA`).
TD_HKID_ASSIGNED, TD_KEYS_CONFIGURED, TD_BLOCKED, TD_TEARDOWN = Lifecycle


class OpState(IntEnum):
    """TDCS OP_STATE, orthogonal to the lifecycle ([M15]; import/export omitted)."""

    UNINITIALIZED = 0
    INITIALIZED = 1
    RUNNABLE = 2


OP_UNINITIALIZED, OP_INITIALIZED, OP_RUNNABLE = OpState  # plain names for hot paths


class KotState(IntEnum):
    """Key Ownership Table entry states (module `tdx_global_data.h`)."""

    HKID_FREE = 0
    HKID_ASSIGNED = 1
    HKID_FLUSHED = 2
    HKID_RESERVED = 3


HKID_FREE, HKID_ASSIGNED, HKID_FLUSHED, HKID_RESERVED = KotState  # plain names for hot paths


class VcpuState(IntEnum):
    """Model names for TDVPS init/run state: created, initialised (TDH.VP.INIT), in guest."""

    VCPU_UNINITIALIZED = 0
    VCPU_READY = 1
    VCPU_ACTIVE = 2


VCPU_UNINITIALIZED, VCPU_READY, VCPU_ACTIVE = VcpuState  # plain names for hot paths


NO_LP = -1
# TDCS and TDVPS page counts (module 1.5 `src/common/data_structures/td_control_structures.h`,
# `tdx_tdvps.h`, same in 1.5.01 and 1.5.05): TDH.MNG.ADDCX accepts up to MAX_NUM_TDCS_PAGES;
# the TDCS exists (OP_STATE readable, TDCS_NOT_ALLOCATED gone) from MIN_NUM_TDCS_PAGES on.
# A vCPU's TDVPS is its TDVPR plus TDCX pages: TDH.VP.ADDCX stops at MAX_TDVPS_PAGES, and
# `map_tdvps` (VP.INIT, VP.FLUSH, VP.RD/WR) needs MIN_TDVPS_PAGES (+3 per L2 VM; no L2 VMs
# here), so 5..14 TDCX pages per vCPU are accepted.
MIN_NUM_TDCS_PAGES = 6
MAX_NUM_TDCS_PAGES = 9
MIN_TDVPS_PAGES = 6
MAX_TDVPS_PAGES = 15
MIN_TDCX_PER_VCPU = MIN_TDVPS_PAGES - 1  # the TDVPR is TDVPS page 0
MAX_TDCX_PER_VCPU = MAX_TDVPS_PAGES - 1
# 0-step mitigation (module 1.5 `src/td_transitions/td_exit_stepping.h`): EPT-violation exits
# at one guest RIP are counted up to STEPPING_EPF_THRESHOLD; every further one records its GPA
# in a per-vCPU list of at most EPF_GPA_LIST_SIZE (`td_exit_epf_stepping_log`).
STEPPING_EPF_THRESHOLD = 6
EPF_GPA_LIST_SIZE = 32
# So the first fault that arms the 0-step check of the next TDH.VP.ENTER is this one.
EPF_FAULTS_TO_ARM = STEPPING_EPF_THRESHOLD + 1


class Tdcs:
    """TD control structure: exists once every TDCS page has been added (TDH.MNG.ADDCX)."""

    def __init__(self, td: Tdr, root_hpa: int):
        self.op_state = OpState.UNINITIALIZED
        self.td_epoch = 1
        self.refcount = [0, 0]  # vCPUs in guest per epoch parity
        self.num_assoc_vcpus = 0
        self.num_vcpus = 0  # vCPUs initialised by TDH.VP.INIT (TDH.MR.FINALIZE needs one)
        self.x2apic_ids: list[int] = []  # per VCPU_INDEX, from TDH.VP.INIT version 1
        self.attributes = 0  # TD_PARAMS.ATTRIBUTES (bit 0 = DEBUG), read by TDH.MNG.RD
        self.hp_lock_timeout = 1_000_000  # usec, DEFAULT_HP_LOCK_TIMEOUT_USEC; TDH.MNG.WR
        self.epoch_lock = SharexLock(f"TD_EPOCH[{td.pa:#x}]")
        self.sept_lock = SharexLock(f"SEPT_TREE[{td.pa:#x}]")
        self.op_state_lock = SharexHpLock(f"OP_STATE[{td.pa:#x}]")
        self.sept = SecureEpt(root_hpa)

    def is_tlb_tracked(self, bepoch: int) -> bool:
        """`is_tlb_tracked` ([M15] `helpers.h`): every vCPU that ran in the block epoch exited."""
        if bepoch < self.td_epoch - 1:
            return True
        return bepoch == self.td_epoch - 1 and self.refcount[bepoch & 1] == 0


class Tdr:
    """TD root page: the module's handle for a TD (owner of all its pages)."""

    def __init__(self, pa: int, hkid: int):
        self.pa = pa
        self.hkid = hkid
        self.lifecycle = Lifecycle.TD_HKID_ASSIGNED
        self.fatal = False
        self.chldcnt = 0
        self.tdcx_pa: list[int] = []
        self.pkg_config: set[int] = set()
        self.tdcs: Tdcs | None = None
        self.vcpus: dict[int, Tdvps] = {}

    def __repr__(self) -> str:
        return f"Tdr({self.pa:#x}, hkid={self.hkid}, {self.lifecycle.name}, chldcnt={self.chldcnt})"


class Tdvps:
    """A TD vCPU (TDVPR page plus TDCX pages)."""

    def __init__(self, pa: int, td: Tdr):
        self.pa = pa
        self.td = td
        self.tdcx_pa: list[int] = []
        self.state = VcpuState.VCPU_UNINITIALIZED
        self.assoc_lpid = NO_LP
        self.vcpu_index = -1  # TDVPS.VCPU_INDEX, given by TDH.VP.INIT
        self.vmcs: dict[int, int] = {}  # TD VMCS fields KVM writes with TDH.VP.WR
        self.vcpu_epoch = 0
        # Counted in TDCS.REFCOUNT[vcpu_epoch & 1]: from VP.ENTER's epoch step (before its
        # 0-step check) until the TD exit, or until VP.ENTER gives up after counting itself.
        self.counted = False
        self.enter_locks: list = []  # (lock, who) held from VP.ENTER until TD exit
        self.epf_count = 0  # TDVPS possibly_epf_stepping: EPT faults at the same RIP
        self.epf_gpas: list[int] = []  # TDVPS last_epf_gpa_list: checked at every VP.ENTER

    @property
    def in_guest(self) -> bool:
        return self.state == VcpuState.VCPU_ACTIVE

    def __repr__(self) -> str:
        return f"Tdvps({self.pa:#x}, {self.state.name}, lp={self.assoc_lpid})"
