"""Lesson 03 (TDX_OPERAND_BUSY): which module locks each SEAMCALL/TDCALL takes, found by issuing
the call on a built TD with a spy on the module's try-locks, compared with what the module 1.5.01
handlers take ([M15]; the table of [Y-RFC]; printed by `format_lock_table`).

Nothing here changes the model: the spy wraps the lock methods for the duration of one call
and restores them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ..tdx.locks import EntryLock, SharexHpLock, SharexLock
from .operand_busy import Lab, P, Q, new_lab

LOCK_COLUMNS = ("TDR", "OP_STATE", "TD epoch", "S-EPT tree", "S-EPT entry", "page",
                "TDVPR", "KOT")

# What the module 1.5.01 handlers take ([M15]), cross-checked with Yan Zhao's RFC table
# ([Y-RFC]), in the notation: S shared, X exclusive, H / G the S-EPT entry's host / guest lock.
REFERENCE_LOCKS = {
    "TDH.VP.ENTER": {"TDR": "S", "OP_STATE": "S", "TD epoch": "S", "TDVPR": "S"},
    "TDH.VP.ENTER (0-step)": {"TDR": "S", "OP_STATE": "S", "TD epoch": "S",
                              "S-EPT tree": "X", "TDVPR": "S"},
    "TDH.MEM.TRACK": {"TDR": "S", "OP_STATE": "S", "TD epoch": "X"},
    "TDH.MEM.RANGE.BLOCK": {"TDR": "S", "OP_STATE": "S", "S-EPT tree": "X", "S-EPT entry": "H"},
    "TDH.MEM.RANGE.UNBLOCK": {"TDR": "S", "OP_STATE": "S", "S-EPT tree": "X",
                              "S-EPT entry": "H"},
    "TDH.MEM.PAGE.REMOVE": {"TDR": "S", "OP_STATE": "S", "S-EPT tree": "S", "S-EPT entry": "H",
                            "page": "X"},
    "TDH.MEM.PAGE.AUG": {"TDR": "S", "OP_STATE": "S", "S-EPT tree": "S", "S-EPT entry": "H",
                         "page": "X"},
    "TDH.MEM.SEPT.ADD": {"TDR": "S", "OP_STATE": "S", "S-EPT tree": "S", "S-EPT entry": "H",
                         "page": "X"},
    "TDG.MEM.PAGE.ACCEPT": {"S-EPT entry": "G"},
    "TDH.VP.FLUSH": {"TDR": "S", "TDVPR": "X"},
    "TDH.MNG.VPFLUSHDONE": {"TDR": "X", "KOT": "X"},
    "TDH.MNG.KEY.FREEID": {"TDR": "X", "KOT": "X"},
    "TDH.PHYMEM.PAGE.RECLAIM": {"TDR": "S", "page": "X"},
}
# Held by VP.ENTER for the whole guest run, released at TD exit ([M15] `tdh_vp_enter.c`,
# `td_exit.c`).
REFERENCE_HELD_IN_GUEST = ("TDR", "TDVPR")


# --- the lock spy ----------------------------------------------------------------------------
@contextlib.contextmanager
def lock_spy():
    """Record every successful try-lock acquisition: yields a list of (lock, mode, who) with
    mode "S", "X", "H" (entry, host) or "G" (entry, guest)."""
    got: list = []
    orig = (SharexLock.try_shared, SharexLock.try_exclusive, EntryLock.try_host,
            EntryLock.try_guest)
    # SharexHpLock (PAMT entries, OP_STATE) has its own try_* methods, not calling the base's.
    orig_hp = (SharexHpLock.try_shared, SharexHpLock.try_exclusive)

    def spy_sharex(try_shared, try_exclusive):
        def shared(self, who, host=True):
            ok = try_shared(self, who, host)
            if ok:
                got.append((self, "S", who))
            return ok

        def exclusive(self, who, host=True):
            ok = try_exclusive(self, who, host)
            if ok:
                got.append((self, "X", who))
            return ok
        return shared, exclusive

    def host(self, who):
        ok = orig[2](self, who)
        if ok:
            got.append((self, "H", who))
        return ok

    def guest(self, who):
        r = orig[3](self, who)
        if r == "ok":
            got.append((self, "G", who))
        return r

    SharexLock.try_shared, SharexLock.try_exclusive = spy_sharex(*orig[:2])
    SharexHpLock.try_shared, SharexHpLock.try_exclusive = spy_sharex(*orig_hp)
    EntryLock.try_host, EntryLock.try_guest = host, guest
    try:
        yield got
    finally:
        (SharexLock.try_shared, SharexLock.try_exclusive, EntryLock.try_host,
         EntryLock.try_guest) = orig
        SharexHpLock.try_shared, SharexHpLock.try_exclusive = orig_hp


def _column(lab: Lab, lock) -> str:
    if isinstance(lock, EntryLock):
        return "S-EPT entry"
    c = lab.tdcs
    if lock is c.op_state_lock:
        return "OP_STATE"
    if lock is c.epoch_lock:
        return "TD epoch"
    if lock is c.sept_lock:
        return "S-EPT tree"
    if lock is lab.module.kot_lock:
        return "KOT"
    name = getattr(lock, "name", "")
    if name.startswith("PAMT["):
        pa = int(name[5:-1], 16)
        if pa == lab.tdr:
            return "TDR"
        if pa in lab.module.vcpus:
            return "TDVPR"
        return "page"
    return name.split("[")[0] or "?"


@dataclass
class LockRow:
    call: str
    locks: dict[str, str]
    held_in_guest: tuple[str, ...]
    status: str


def _probe(lab: Lab, call: str, fn) -> LockRow:
    with lock_spy() as got:
        r = fn()
    locks: dict[str, str] = {}
    for lock, mode, _who in got:
        col = _column(lab, lock)
        locks[col] = "X" if "X" in (locks.get(col), mode) else mode
    held: tuple[str, ...] = ()
    if call.startswith("TDH.VP.ENTER"):
        vp = lab.module.vcpus[lab.vcpus[0]]
        held = tuple(_column(lab, lk) for lk, _ex, _who in vp.enter_locks)
    return LockRow(call, locks, held, str(r.status))


def lock_table() -> list[LockRow]:
    """Issue each SEAMCALL once, in a legal order, on the lab TD and record the locks it took."""
    lab = new_lab()
    m, tdr, h = lab.module, lab.tdr, lab.host_lp
    vp0, vp1 = lab.vcpus
    rows = [_probe(lab, "TDH.VP.ENTER", lambda: lab.vp_enter(0))]
    rows.append(_probe(lab, "TDG.MEM.PAGE.ACCEPT",
                       lambda: m.tdg_mem_page_accept(vp0, P, 0, lp=lab.vcpu_lp[vp0])))
    lab.td_exit(0)
    lab.arm_zero_step(0, 0x1000)
    rows.append(_probe(lab, "TDH.VP.ENTER (0-step)", lambda: lab.vp_enter(0)))
    lab.td_exit(0)
    rows.append(_probe(lab, "TDH.MEM.PAGE.AUG",
                       lambda: m.tdh_mem_page_aug(tdr, Q, 0, lab.builder.page(), lp=h)))
    rows.append(_probe(lab, "TDH.MEM.SEPT.ADD",
                       lambda: m.tdh_mem_sept_add(tdr, 0x200000, 1, lab.builder.page(), lp=h)))
    rows.append(_probe(lab, "TDH.MEM.RANGE.BLOCK",
                       lambda: m.tdh_mem_range_block(tdr, 0x1000, 0, lp=h)))
    rows.append(_probe(lab, "TDH.MEM.TRACK", lambda: m.tdh_mem_track(tdr, lp=h)))
    rows.append(_probe(lab, "TDH.MEM.PAGE.REMOVE",
                       lambda: m.tdh_mem_page_remove(tdr, 0x1000, 0, lp=h)))
    m.tdh_mem_range_block(tdr, 0, 0, lp=h)
    m.tdh_mem_track(tdr, lp=h)
    rows.append(_probe(lab, "TDH.MEM.RANGE.UNBLOCK",
                       lambda: m.tdh_mem_range_unblock(tdr, 0, 0, lp=h)))
    rows.append(_probe(lab, "TDH.VP.FLUSH", lambda: m.tdh_vp_flush(vp0, lp=lab.vcpu_lp[vp0])))
    m.tdh_vp_flush(vp1, lp=lab.vcpu_lp[vp1])
    rows.append(_probe(lab, "TDH.MNG.VPFLUSHDONE", lambda: m.tdh_mng_vpflushdone(tdr, lp=h)))
    m.tdh_phymem_cache_wb(0, lp=h)
    rows.append(_probe(lab, "TDH.MNG.KEY.FREEID", lambda: m.tdh_mng_key_freeid(tdr, lp=h)))
    rows.append(_probe(lab, "TDH.PHYMEM.PAGE.RECLAIM",
                       lambda: m.tdh_phymem_page_reclaim(lab.private[0], lp=h)))
    return rows


def lock_differences(rows: list[LockRow]) -> list[str]:
    """Where the model's locks differ from `REFERENCE_LOCKS` (the module source)."""
    out = []
    for r in rows:
        ref = REFERENCE_LOCKS.get(r.call)
        if ref is None:
            continue
        for col in LOCK_COLUMNS:
            a, b = r.locks.get(col, "-"), ref.get(col, "-")
            if a != b:
                out.append(f"{r.call}: {col} model {a}, module source {b}")
        if r.call == "TDH.VP.ENTER" and set(r.held_in_guest) != set(REFERENCE_HELD_IN_GUEST):
            out.append(f"{r.call}: held in guest model {r.held_in_guest}, "
                       f"reference {REFERENCE_HELD_IN_GUEST}")
    return out


def format_lock_table(rows: list[LockRow] | None = None) -> str:
    """Fixed-width text: one row per call, S / X / H / G per resource; `*` = held for the
    whole guest run (until TD exit)."""
    rows = lock_table() if rows is None else rows
    w = max(len(r.call) for r in rows)
    head = (f"{'call':<{w}}  " + " ".join(f"{c:<10}" for c in LOCK_COLUMNS)).rstrip()
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for c in LOCK_COLUMNS:
            v = r.locks.get(c, "-")
            if c in r.held_in_guest:
                v += "*"
            cells.append(f"{v:<10}")
        lines.append(f"{r.call:<{w}}  " + " ".join(cells).rstrip())
    diffs = lock_differences(rows)
    lines.append("")
    lines.append("* held from VP.ENTER until the TD exit")
    lines.append("compared with the module 1.5.01 source [M15]: " + (
        "every lock matches" if not diffs else f"{len(diffs)} differences"))
    lines += [f"  {d}" for d in diffs]
    return "\n".join(lines)


__all__ = ["LOCK_COLUMNS", "REFERENCE_LOCKS", "REFERENCE_HELD_IN_GUEST", "lock_spy", "LockRow",
           "lock_table", "lock_differences", "format_lock_table"]
