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
        """The present leaf that maps `gpa`, if any (what the guest would hit)."""
        for lvl in range(SEPT_LEVELS - 1, -1, -1):
            e = self.entries.get((lvl, gpa & ~(level_size(lvl) - 1)))
            if e is None or e.state == SEPT_FREE:
                return None
            if e.state not in NON_LEAF:
                return e
        return None
