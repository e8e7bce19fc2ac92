"""The Secure EPT: the TD's private GPA -> HPA tree, owned by the TDX module.

Entry states and which SEAMCALL may move an entry from which state come from the module's
generated tables ([M15]: module 1.5.01
`include/auto_gen/sept_state_lookup.c`). We model the states a KVM host reaches (live
migration states are listed for completeness but never produced).

Levels follow the module: 0 = 4 KiB entry, 1 = 2 MiB, 2 = 1 GiB, 3 = 512 GiB. With a 4-level
S-EPT the root page (TDCS page 3, SEPT_ROOT_PAGE_INDEX in [M15] `td_control_structures.h`) holds
the level-3
entries; TDH.MEM.SEPT.ADD at level L turns the level-L entry into a non-leaf pointing at a new
page of level L-1 entries.
"""

from __future__ import annotations

from enum import IntEnum

from .locks import EntryLock

SEPT_LEVELS = 4  # 4-level S-EPT, GPA width 48
GPAW = 48
SHARED_BIT = 1 << (GPAW - 1)  # the shared bit of a 48-bit GPA (bit 47)


def level_shift(level: int) -> int:
    return 12 + 9 * level


_SIZES = tuple(1 << (12 + 9 * lvl) for lvl in range(SEPT_LEVELS + 1))
_MASKS = tuple(~(size - 1) for size in _SIZES)
LEVEL_SIZES = _SIZES  # bytes an entry maps at levels 0..4


def level_size(level: int) -> int:
    return _SIZES[level] if 0 <= level <= SEPT_LEVELS else 1 << level_shift(level)


class SeptState(IntEnum):
    """S-EPT entry states; value = index in the module's table ([M15] `sept_state_lookup.h`)."""

    FREE = 0
    REMOVED = 1
    NL_MAPPED = 2
    NL_BLOCKED = 3
    MAPPED = 4
    BLOCKED = 5
    BLOCKEDW = 6
    EXPORTED_BLOCKEDW = 7
    EXPORTED_DIRTY = 8
    EXPORTED_DIRTY_BLOCKEDW = 9
    PENDING = 10
    PENDING_BLOCKED = 11
    PENDING_BLOCKEDW = 12
    PENDING_EXPORTED_BLOCKEDW = 13
    PENDING_EXPORTED_DIRTY = 14
    PENDING_EXPORTED_DIRTY_BLOCKEDW = 15


S = SeptState
# Plain names for the states hot paths write (see `tdx.pamt.PT_NDA`).
SEPT_FREE, SEPT_MAPPED, SEPT_PENDING = S.FREE, S.MAPPED, S.PENDING
NON_LEAF = frozenset({S.NL_MAPPED, S.NL_BLOCKED})
_NL_MAPPED = S.NL_MAPPED  # a plain name: Enum attribute access is slow on the walk's hot path
ANY_BLOCKED = frozenset({S.NL_BLOCKED, S.BLOCKED, S.PENDING_BLOCKED})
GUEST_ACCESSIBLE = frozenset(
    {S.MAPPED, S.BLOCKEDW, S.EXPORTED_BLOCKEDW, S.EXPORTED_DIRTY, S.EXPORTED_DIRTY_BLOCKEDW}
)
PENDING_STATES = frozenset(
    {
        S.PENDING,
        S.PENDING_BLOCKED,
        S.PENDING_BLOCKEDW,
        S.PENDING_EXPORTED_BLOCKEDW,
        S.PENDING_EXPORTED_DIRTY,
        S.PENDING_EXPORTED_DIRTY_BLOCKEDW,
    }
)
LEAF_PRESENT = GUEST_ACCESSIBLE | PENDING_STATES | {S.BLOCKED}
# `guest_fully_accessible_leaf` (module `sept_state_lookup.c` special flags): readable, writable
# and executable by the guest. The 0-step check of TDH.VP.ENTER asks for RWX, so a BLOCKEDW
# page (no W) still counts as a fault to come (`td_exit_stepping.c` is_epf_expected).
GUEST_FULLY_ACCESSIBLE = frozenset({S.MAPPED, S.EXPORTED_DIRTY})
# `any_pending_and_guest_acceptable`: what TDG.MEM.PAGE.ACCEPT turns into a mapped page.
ACCEPTABLE = frozenset({S.PENDING, S.PENDING_EXPORTED_DIRTY})

# Allowed source states and results per call ([M15] `sept_state_lookup.c`).
BLOCK_RESULT = {
    S.NL_MAPPED: S.NL_BLOCKED,
    S.MAPPED: S.BLOCKED,
    S.BLOCKEDW: S.BLOCKED,
    S.PENDING: S.PENDING_BLOCKED,
    S.PENDING_BLOCKEDW: S.PENDING_BLOCKED,
}
UNBLOCK_RESULT = {S.NL_BLOCKED: S.NL_MAPPED, S.BLOCKED: S.MAPPED, S.PENDING_BLOCKED: S.PENDING}
REMOVE_ALLOWED = frozenset(
    {S.MAPPED, S.BLOCKED, S.BLOCKEDW, S.PENDING, S.PENDING_BLOCKED, S.PENDING_BLOCKEDW}
)
AUG_ALLOWED = frozenset({S.FREE, S.REMOVED})
# `tdcall_sept_state_lookup` rows 23 and 24 (module `sept_state_lookup.c`).
ATTR_RD_ALLOWED = GUEST_ACCESSIBLE | (PENDING_STATES - {S.PENDING_BLOCKED})
ATTR_WR_ALLOWED = frozenset({S.MAPPED, S.EXPORTED_DIRTY, S.PENDING, S.PENDING_EXPORTED_DIRTY})

# `sept_special_flags_lookup[].public_state` (module 1.5 `include/auto_gen/sept_state_lookup.c`):
# the architectural state the module reports in RDX bits 15:8 when it returns an entry's
# details; non-leaf states have bit 7 set.
ARCH_STATE = {
    S.FREE: 0, S.REMOVED: 5, S.NL_MAPPED: 0x84, S.NL_BLOCKED: 0x81, S.MAPPED: 4, S.BLOCKED: 1,
    S.BLOCKEDW: 8, S.EXPORTED_BLOCKEDW: 9, S.EXPORTED_DIRTY: 11, S.EXPORTED_DIRTY_BLOCKEDW: 12,
    S.PENDING: 2, S.PENDING_BLOCKED: 3, S.PENDING_BLOCKEDW: 16, S.PENDING_EXPORTED_BLOCKEDW: 17,
    S.PENDING_EXPORTED_DIRTY: 19, S.PENDING_EXPORTED_DIRTY_BLOCKEDW: 20,
}
SUPPRESS_VE = 1 << 63
_NO_W = frozenset({S.BLOCKEDW, S.EXPORTED_BLOCKEDW, S.EXPORTED_DIRTY_BLOCKEDW})
_LEAF_BITS = (6 << 3) | (1 << 6) | (1 << 7) | SUPPRESS_VE  # MT = WB, IPAT, PS (leaf), SVE


def state_rwx(state: SeptState) -> int:
    """The R/W/X bits the module keeps in an entry of this state: a mapped table or a fully
    accessible page RWX, a write-blocked page R+X, anything else (free, blocked, pending) none."""
    if state == _NL_MAPPED or state in GUEST_FULLY_ACCESSIBLE:
        return 7
    return 5 if state in _NO_W else 0


def entry_rwx(entry: SeptEntry | None) -> int:
    return 0 if entry is None else state_rwx(entry.state)


def is_leaf(entry: SeptEntry | None) -> bool:
    """`is_secure_ept_leaf_entry` (module `sept_manager.h`): PS set, i.e. a page in any state."""
    return entry is not None and entry.state not in NON_LEAF and entry.state not in (
        SEPT_FREE, S.REMOVED)


def arch_septe_details(state: SeptState, hpa: int, level: int) -> tuple[int, int]:
    """(RCX, RDX) as `set_arch_septe_details_in_vmm_regs` (module 1.5
    `src/common/memory_handlers/sept_manager.c`) fills them after a failed walk, a busy entry
    or a wrong state: RCX the architectural S-EPT entry -- FREE: SUPPRESS_VE alone; a table:
    its RWX and PS only (SEPT_ARCH_ENTRY_NON_LEAF_MASK, no HPA); a page: HPA, RWX, MT = WB,
    IPAT, PS and SUPPRESS_VE (SEPT_ARCH_ENTRY_LEAF_MASK; the module sets all four on every
    page it maps) -- and RDX = level (bits 2:0) | architectural state << 8."""
    rdx = level | ARCH_STATE[state] << 8
    if state == SEPT_FREE:
        return SUPPRESS_VE, rdx
    if state in NON_LEAF or state == S.REMOVED:
        return state_rwx(state), rdx
    return hpa | state_rwx(state) | _LEAF_BITS, rdx


def septe_details(entry: SeptEntry | None, level: int) -> tuple[int, int]:
    """`arch_septe_details` of an entry object; `None` is an entry never written (FREE)."""
    if entry is None:
        return arch_septe_details(SEPT_FREE, 0, level)
    return arch_septe_details(entry.state, entry.hpa, level)


class SeptEntry:
    __slots__ = ("level", "gpa", "state", "hpa", "lock")

    def __init__(self, level: int, gpa: int):
        self.level = level
        self.gpa = gpa
        self.state = SEPT_FREE
        self.hpa = 0
        self.lock = EntryLock()

    @property
    def is_leaf(self) -> bool:
        return self.state not in NON_LEAF

    def __repr__(self) -> str:
        return f"SeptEntry(L{self.level} {self.gpa:#x} {self.state.name} -> {self.hpa:#x})"


class SecureEpt:
    """One TD's S-EPT as a map (level, gpa) -> entry; the root level always exists."""

    def __init__(self, root_hpa: int):
        self.root_hpa = root_hpa
        self.entries: dict[tuple[int, int], SeptEntry] = {}

    def walk(self, gpa: int, level: int) -> SeptEntry | None:
        """The entry at `level` for `gpa`, or None (EPT_WALK_FAILED) when an entry above it is
        not a mapped table: missing, a leaf, or a *blocked* table (RWX = 0). The host-side
        `secure_ept_walk` (module 1.5 `src/common/memory_handlers/sept_manager.c`, checked
        against niooss-ledger/tdx-module @0ea5e5f9) stops at any of those."""
        entries = self.entries
        for lvl in range(SEPT_LEVELS - 1, level, -1):
            e = entries.get((lvl, gpa & _MASKS[lvl]))
            if e is None or e.state != _NL_MAPPED:
                return None
        key = (level, gpa & _MASKS[level])
        e = self.entries.get(key)
        if e is None:
            e = self.entries[key] = SeptEntry(level, key[1])
        return e

    def entry_at(self, gpa: int, level: int) -> SeptEntry:
        """The entry at `level` for `gpa`, created FREE if never written (no walk)."""
        key = (level, gpa & _MASKS[level])
        e = self.entries.get(key)
        if e is None:
            e = self.entries[key] = SeptEntry(level, key[1])
        return e

    def walk_stop(self, gpa: int, level: int) -> tuple[SeptEntry | None, int]:
        """Where `secure_ept_walk` stops on the way to `level`: the entry (None if never
        written, i.e. FREE) and its level. The requested entry itself when every table above
        is NL_MAPPED. Off the hot path: for failure details and guest-side walks."""
        for lvl in range(SEPT_LEVELS - 1, level, -1):
            e = self.entries.get((lvl, gpa & _MASKS[lvl]))
            if e is None or e.state != _NL_MAPPED:
                return e, lvl
        return self.entries.get((level, gpa & _MASKS[level])), level
    def stop(self, gpa: int, level: int) -> tuple[SeptState, int, int]:
        """Where `walk(gpa, level)` stops: (state, HPA, level) of the entry it ends on -- the
        requested one, or the first entry above it that is not a mapped table. The module
        reports that entry in RCX/RDX when a walk fails (`set_arch_septe_details_in_vmm_regs`)."""
        for lvl in range(SEPT_LEVELS - 1, level - 1, -1):
            e = self.entries.get((lvl, gpa & _MASKS[lvl]))
            if e is None:
                return SEPT_FREE, 0, lvl
            if lvl == level or e.state != _NL_MAPPED:
                return e.state, e.hpa, lvl
        return SEPT_FREE, 0, level

    def walk_to_leaf(self, gpa: int) -> SeptEntry | None:
        """`check_and_walk_private_gpa_to_leaf` (module 1.5 `src/common/helpers/helpers.c`,
        SEPT_WALK_TO_LEAF): down from the root to the first entry that is not a mapped table;
        it must be a present leaf (RWX != 0: a guest-accessible state), else None."""
        for lvl in range(SEPT_LEVELS - 1, -1, -1):
            e = self.entries.get((lvl, gpa & _MASKS[lvl]))
            if e is None:
                return None
            if e.state != _NL_MAPPED:
                return e if e.state in GUEST_ACCESSIBLE else None
        return None

    def children(self, entry: SeptEntry) -> list[SeptEntry]:
        """Entries in the table a non-leaf entry points at that are not FREE."""
        lvl = entry.level - 1
        lo, hi = entry.gpa, entry.gpa + level_size(entry.level)
        return [
            e
            for (lv, g), e in self.entries.items()
            if lv == lvl and lo <= g < hi and e.state != SEPT_FREE
        ]

    def leaves(self) -> list[SeptEntry]:
        return [e for e in self.entries.values() if e.state in LEAF_PRESENT]

    def tables(self) -> list[SeptEntry]:
        return [e for e in self.entries.values() if e.state in NON_LEAF]

    def translate(self, gpa: int) -> SeptEntry | None:
        """The leaf that maps `gpa` if every table above it is NL_MAPPED, else None: what a
        guest access would reach (`gpa_translate`, module `sept_manager.c`: a blocked table has
        RWX = 0 and stops the walk like a missing one)."""
        for lvl in range(SEPT_LEVELS - 1, -1, -1):
            e = self.entries.get((lvl, gpa & ~(level_size(lvl) - 1)))
            if e is None or e.state == SEPT_FREE or e.state == S.NL_BLOCKED:
                return None
            if e.state not in NON_LEAF:
                return e
        return None
