"""Dynamic PAMT (DPAMT) in the TDX module: on-demand PAMT_4K, page pairs per 2 MB range, and
the two SEAMCALLs that install and remove them.

With `TdxModule(dynamic_pamt=True)` the PAMT_4K array is gone (only a bitmap of PAMT pages
remains, `Pamt.pamt_pages`); each 2 MB range's PAMT_2M entry is one of ([M20], [V6-02]):

* ``PT_NDA``  -- no PAMT_4K: no 4K page of the range can be given to a TD;
* ``PT_PAMT`` -- a node naming two host pages holding the range's 512 16-byte PAMT_4K entries;
* a 2 MB leaf (``PT_REG``) -- the range is one TD page, tracked in PAMT_2M, needing no pair.

Rules modelled, with sources:

* TDH.PHYMEM.PAMT.ADD (leaf 58, [V6-03]; module 2.0 `tdh_phymem_pamt_add.c`, [M20-PAMT-ADD]): DPAMT
off
  -> OPERAND_INVALID | RAX; RCX must be a 2 MB-aligned HPA with level 2M (1), no KeyID and no
  reserved bits -> else OPERAND_INVALID | RCX; each PAMT page 4K-aligned without KeyID
  (OPERAND_INVALID | RDX / R8) and inside a TDMR (ADDR_RANGE_ERROR | RDX / R8); the range inside
  a TDMR (ADDR_RANGE_ERROR | RCX); the PAMT_2M entry locked exclusively (OPERAND_BUSY | RCX);
  it must be PT_NDA (HPA_RANGE_NOT_FREE | RCX); each PAMT page outside the range is walked
  shared (BUSY) and must be free (PAGE_NOT_FREE | RDX / R8); the bitmap bit of each page is
  test-and-set (already a PAMT page -> PAGE_NOT_FREE). Then the pages are zeroed and the entry
  becomes a PT_PAMT node.
* TDH.PHYMEM.PAMT.REMOVE (leaf 59; `tdh_phymem_pamt_remove.c`): same enable / RCX / range
  checks; exclusive lock (BUSY | RCX); must be PT_PAMT (NO_PAMT_PAGE_PAIR | RCX); every one of
  the 512 PAMT_4K entries PT_NDA, else PAMT_PAGE_NOT_EMPTY with the *index of the PAMT page*
  (0 or 1) holding the busy entry as operand id; clears the bitmap bits, returns the pages in
  RDX / R8, entry back to PT_NDA.
* Handing a 4K page to a TD (MNG.CREATE, MNG.ADDCX, VP.CREATE, VP.ADDCX, PAGE.ADD, PAGE.AUG,
  SEPT.ADD, DEMOTE's new S-EPT page) walks the PAMT to the 4K level: on a range without a
  pair the walk stops at PAMT_2M, locked exclusively, and the page gets
  TDX_MISSING_PAMT_PAGE_PAIR | operand (module 2.0 `helpers.c`
  `non_shared_hpa_metadata_check_and_lock`; the list: [V2-CL], [RFC-01]); on a 2 MB leaf it
  gets PAGE_METADATA_INCORRECT; with a pair the PAMT_2M node is held shared, and a page that is
  itself a PAMT page (bitmap bit set) gets PAGE_METADATA_INCORRECT.
* Removals (PAGE.REMOVE, SEPT.REMOVE, PAGE.RECLAIM, PROMOTE) set `pamt_removal_hint` when
  the range's count of 4K pages in use reaches 0 ([V2-CL]; PAMT_REMOVAL_HINT bit 62).
* 2 MB leaves (`huge_pages=True`): PAGE.AUG at level 1 needs a free 2 MB range and no pair;
  TDH.MEM.PAGE.DEMOTE splits it into 512 4K leaves and, with DPAMT, takes the page pair that
  backs them ([V2-CL]: "DEMOTE takes a PAMT page pair as extra input"); PROMOTE merges them
  back and returns the pair in RDX / R8. Module 1.5 `tdh_mem_page_demote.c` for the rest:
  TDR shared, the leaf BLOCKED and TLB-tracked when the TD is runnable, the new S-EPT page
  checked like any page handed to a TD, the children come out unblocked, child count +1.
  Modelled minimally (2M -> 4K only; no L2 VMs, no interruption). The registers that carry
  DEMOTE's pair are not in our sources: the model reports their errors with operand ids R9
  (page 0) and R10 (page 1), an assumption.
"""

from __future__ import annotations

from . import status as st
from .core import IN_SEAMCALL, Call, Result
from .leaves import Leaf
from .pamt import KEYID_SHIFT, PAGE_2M, PAGE_SIZE, PageType
from .sept import SeptEntry, SeptState
from .td import OpState

RCX, RDX, R8 = st.TDX_OPERAND_ID_RCX, st.TDX_OPERAND_ID_RDX, st.TDX_OPERAND_ID_R8
R9, R10 = st.TDX_OPERAND_ID_R9, 0x0A
OK = st.TDX_SUCCESS
TDX_PS_2M = 1  # page level 2M in RCX bits 2:0 (kernel `TDX_PS_2M`)
TDX_DPAMT_ENTRY_PAGE_CNT = 2  # pages per 2 MB (v6; module DEFAULT_NUM_PAMT_PAGES)
PAMT_4K_ENTRIES_PER_PAGE = PAGE_SIZE // 16  # 256 16-byte entries per PAMT page


def pamt_page_info(rcx: int) -> tuple[int, int]:
    """RCX of PAMT.ADD/REMOVE (`page_size_api_input_t`): level in bits 2:0, bits 11:3
    reserved. Returns (HPA with any KeyID bits kept, level; 8 when reserved bits are set)."""
    level = rcx & 7 if not rcx & 0xFF8 else 8
    return rcx & ~0xFFF, level


class DpamtMixin:
    """Dynamic PAMT state checks and the PAMT.ADD / REMOVE / DEMOTE / PROMOTE handlers."""

    dynamic_pamt: bool
    huge_pages: bool

    def _dpamt_invariants(self) -> list[str]:
        """Every 4K page in use has PAMT_4K (a PT_PAMT node over its range); the bitmap is
        exactly the pages the nodes name; a PAMT page is never also a TD page."""
        bad: list[str] = []
        pamt = self.pamt
        named: set[int] = set()
        for r in pamt.ranges.values():
            if r.pt == PageType.PT_PAMT:
                if not self.dynamic_pamt:
                    bad.append(f"PT_PAMT node at {r.index << 21:#x} on a static-PAMT module")
                named.update((r.page0 >> 12, r.page1 >> 12))
        in_flight = any(r.lock.writer for r in pamt.ranges.values())  # ADD/DEMOTE mid-call
        if not named <= pamt.pamt_pages or (not in_flight and named != pamt.pamt_pages):
            bad.append(f"PAMT page bitmap {sorted(pamt.pamt_pages)} != pages named by nodes "
                       f"{sorted(named)}")
        if not self.dynamic_pamt:
            return bad
        for e in pamt.entries.values():
            if e.pt in (PageType.PT_NDA, PageType.PT_RSVD):
                continue
            if pamt.range_pt(e.pfn << 12) != PageType.PT_PAMT:
                bad.append(f"page {e.pfn << 12:#x} ({e.pt.name}) in use with no PAMT page pair")
            if e.pfn in pamt.pamt_pages:
                bad.append(f"page {e.pfn << 12:#x} is both a PAMT page and {e.pt.name}")
        return bad

    # --- the 4K backing check every "give a page to a TD" SEAMCALL makes ---------------------
    def _pamt_4k_backing_error(self, call: Call, pa: int, operand: int):
        if not self.dynamic_pamt:
            return None
        r = self.pamt.range_entry(pa)
        if r.pt == PageType.PT_PAMT:
            if not call.shared(r.lock):
                return st.TDX_OPERAND_BUSY | operand
            if pa >> 12 in self.pamt.pamt_pages:
                return st.TDX_PAGE_METADATA_INCORRECT | operand  # "actually used as DPAMT"
            return None
        if not call.exclusive(r.lock):
            return st.TDX_OPERAND_BUSY | operand
        if r.pt != PageType.PT_NDA:
            return st.TDX_PAGE_METADATA_INCORRECT | operand  # the range is a 2 MB page
        return st.TDX_MISSING_PAMT_PAGE_PAIR | operand

    def _removal_hint(self, res: Result, pa: int) -> Result:
        """PAMT_REMOVAL_HINT: the freed page's 2 MB range has no 4K page in use any more."""
        if self.dynamic_pamt and res.ok and self.pamt.range_pt(pa) == PageType.PT_PAMT:
            res.pamt_removal_hint = self.pamt.pages_in_use_4k(pa) == 0
        return res

    def _pamt_page_error(self, call: Call, hpa_2m: int, page: int, operand: int):
        """A page offered to hold PAMT_4K entries: format, TDMR, then (when outside the range
        being covered) walked shared and free; then its bitmap bit must be clear."""
        if page < 0 or page % PAGE_SIZE or page >> KEYID_SHIFT:
            return st.TDX_OPERAND_INVALID | operand
        if not self.pamt.covers(page):
            return st.TDX_OPERAND_ADDR_RANGE_ERROR | operand
        return None

    def _pamt_page_busy_or_used(self, call: Call, hpa_2m: int, page: int, operand: int):
        if page >> 21 != hpa_2m >> 21:
            r = self.pamt.range_entry(page)
            if not call.shared(r.lock):
                return st.TDX_OPERAND_BUSY | operand
            if r.pt != PageType.PT_PAMT:
                if r.pt != PageType.PT_NDA:
                    return st.TDX_PAGE_NOT_FREE | operand  # inside a 2 MB TD page
            else:
                e = self.pamt.entry(page >> 12)
                if not call.shared(e.lock):
                    return st.TDX_OPERAND_BUSY | operand
                if e.pt != PageType.PT_NDA:
                    return st.TDX_PAGE_NOT_FREE | operand
        return None

    def _set_pamt_bits(self, page0: int, page1: int, op0: int, op1: int):
        """`dynamic_pamt_4k_bitmap_set` for both pages (atomic test-and-set; undone on the
        second failing)."""
        bits = self.pamt.pamt_pages
        if page0 >> 12 in bits:
            return st.TDX_PAGE_NOT_FREE | op0
        bits.add(page0 >> 12)
        if page1 >> 12 in bits:
            bits.discard(page0 >> 12)
            return st.TDX_PAGE_NOT_FREE | op1
        bits.add(page1 >> 12)
        return None

    # TDH.PHYMEM.PAMT.ADD -------------------------------------------------------------------
    def _h_tdh_phymem_pamt_add(self, hpa: int, page0: int, page1: int, *, lp: int,
                               level: int = TDX_PS_2M):
        leaf = "TDH.PHYMEM.PAMT.ADD"
        call = Call(f"{leaf}@LP{lp}")
        try:
            if not self.dynamic_pamt:
                return Result(leaf, st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX)
            if level != TDX_PS_2M or hpa < 0 or hpa >> KEYID_SHIFT or hpa % PAGE_2M:
                return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
            for page, op in ((page0, RDX), (page1, R8)):
                err = self._pamt_page_error(call, hpa, page, op)
                if err:
                    return Result(leaf, err)
            if not self.pamt.covers(hpa):
                return Result(leaf, st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX)
            r = self.pamt.range_entry(hpa)
            if not call.exclusive(r.lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
            if r.pt != PageType.PT_NDA:
                return Result(leaf, st.TDX_HPA_RANGE_NOT_FREE | RCX)
            for page, op in ((page0, RDX), (page1, R8)):
                err = self._pamt_page_busy_or_used(call, hpa, page, op)
                if err:
                    return Result(leaf, err)
            err = self._set_pamt_bits(page0, page1, RDX, R8)
            if err:
                return Result(leaf, err)
            yield IN_SEAMCALL  # 2 MB entry held exclusively: a second ADD/REMOVE here is BUSY
            r.pt, r.owner, r.page0, r.page1 = PageType.PT_PAMT, 0, page0, page1
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.PHYMEM.PAMT.REMOVE ----------------------------------------------------------------
    def _h_tdh_phymem_pamt_remove(self, hpa: int, *, lp: int, level: int = TDX_PS_2M):
        leaf = "TDH.PHYMEM.PAMT.REMOVE"
        call = Call(f"{leaf}@LP{lp}")
        try:
            if not self.dynamic_pamt:
                return Result(leaf, st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX)
            if level != TDX_PS_2M or hpa < 0 or hpa >> KEYID_SHIFT or hpa % PAGE_2M:
                return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
            if not self.pamt.covers(hpa):
                return Result(leaf, st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX)
            r = self.pamt.range_entry(hpa)
            if not call.exclusive(r.lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
            if r.pt != PageType.PT_PAMT:
                return Result(leaf, st.TDX_NO_PAMT_PAGE_PAIR | RCX)
            first = (hpa >> 12)
            for i in range(512):
                e = self.pamt.entries.get(first + i)
                if e is not None and e.pt not in (PageType.PT_NDA, PageType.PT_RSVD):
                    return Result(leaf, st.TDX_PAMT_PAGE_NOT_EMPTY
                                  | i // PAMT_4K_ENTRIES_PER_PAGE)
            yield IN_SEAMCALL
            pages = r.pages
            self.pamt.pamt_pages.difference_update(p >> 12 for p in pages)
            r.pt, r.page0, r.page1 = PageType.PT_NDA, 0, 0
            return Result(leaf, OK, rdx=pages[0], r8=pages[1])
        finally:
            call.release()

    # 2 MB leaves ---------------------------------------------------------------------------
    def _new_2m_page_error(self, call: Call, pa: int, operand: int):
        """`check_and_lock_free_range_hpa(PT_2MB)` (module 1.5 `helpers.c`): 2 MB aligned, no
        KeyID, in a TDMR, PAMT_2M entry exclusively, PT_NDA and every 4K page of it free (with
        DPAMT a PT_PAMT node is not free either)."""
        if pa < 0 or pa % PAGE_2M or pa >> KEYID_SHIFT:
            return st.TDX_OPERAND_INVALID | operand
        if not self.pamt.covers(pa):
            return st.TDX_OPERAND_ADDR_RANGE_ERROR | operand
        r = self.pamt.range_entry(pa)
        if not call.exclusive(r.lock):
            return st.TDX_OPERAND_BUSY | operand
        if r.pt != PageType.PT_NDA or self.pamt.pages_in_use_4k(pa) or any(
                (pa >> 12) + i in self.pamt.pamt_pages for i in range(512)):
            return st.TDX_PAGE_METADATA_INCORRECT | operand
        return None

    def _give_2m_page(self, pa: int, td) -> None:
        r = self.pamt.range_entry(pa)
        r.pt, r.owner = PageType.PT_REG, td.pa
        td.chldcnt += 512  # counted in 4K units: DEMOTE adds only its S-EPT page
        self._dirty(pa, td.hkid)

    def _free_2m_page(self, pa: int, td) -> None:
        r = self.pamt.range_entry(pa)
        r.pt, r.owner, r.bepoch = PageType.PT_NDA, 0, 0
        td.chldcnt -= 512

    # TDH.MEM.PAGE.DEMOTE (2M -> 4K) --------------------------------------------------------
    def _h_tdh_mem_page_demote(self, tdr: int, gpa: int, level: int, page: int,
                               pamt_page0: int = 0, pamt_page1: int = 0, *, lp: int):
        leaf = "TDH.MEM.PAGE.DEMOTE"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(
                call, tdr, gpa, level, Leaf.TDH_MEM_PAGE_DEMOTE,
                (1,) if self.huge_pages else (), tree_exclusive=True)
            if err:
                return Result(leaf, err)
            tdcs = td.tdcs
            if entry.state not in _DEMOTE_ALLOWED:
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
            big = self.pamt.range_entry(entry.hpa)
            err = self._tracking_error(tdcs, entry, self.pamt.entry(entry.hpa >> 12).bepoch)
            if err:
                return Result(leaf, err)
            err = self._new_page_error(call, page, R8)
            if err:
                return Result(leaf, err)
            if self.dynamic_pamt:
                # `pamt_demote` needs PAMT_4K for the 512 new 4K pages: the supplied pair.
                for p, op in ((pamt_page0, R9), (pamt_page1, R10)):
                    err = self._pamt_page_error(call, entry.hpa, p, op)
                    err = err or self._pamt_page_busy_or_used(call, entry.hpa, p, op)
                    if err:
                        return Result(leaf, err)
                if not call.exclusive(big.lock):
                    return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
                err = self._set_pamt_bits(pamt_page0, pamt_page1, R9, R10)
                if err:
                    return Result(leaf, err)
            yield IN_SEAMCALL
            hpa, small = entry.hpa, _UNBLOCKED.get(entry.state, entry.state)
            owner = big.owner
            big.pt, big.owner = PageType.PT_NDA, 0
            if self.dynamic_pamt:
                big.pt, big.page0, big.page1 = PageType.PT_PAMT, pamt_page0, pamt_page1
            for i in range(512):
                e = self.pamt.entry((hpa >> 12) + i)
                e.pt, e.owner, e.bepoch = PageType.PT_REG, owner, 0
                key = (0, gpa + i * PAGE_SIZE)
                child = tdcs.sept.entries.get(key) or tdcs.sept.entries.setdefault(
                    key, SeptEntry(0, key[1]))
                child.state, child.hpa = small, hpa + i * PAGE_SIZE
            self._give_page(page, PageType.PT_EPT, td)  # chldcnt += 1 (the S-EPT page)
            entry.state, entry.hpa = SeptState.NL_MAPPED, page
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.MEM.PAGE.PROMOTE (512 x 4K -> 2M) -------------------------------------------------
    def _h_tdh_mem_page_promote(self, tdr: int, gpa: int, level: int, *, lp: int):
        """Merge 512 4K leaves mapping one physically contiguous, 2 MB-aligned range (all in
        the same state) back into a 2 MB leaf; the S-EPT page is freed (RCX) and, with DPAMT,
        the pair that backed the range is returned in RDX / R8 ([V2-CL]). Model: the parent
        must be NL_BLOCKED and TLB-tracked while the TD is runnable (as for removal)."""
        leaf = "TDH.MEM.PAGE.PROMOTE"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(
                call, tdr, gpa, level, Leaf.TDH_MEM_PAGE_PROMOTE,
                (1,) if self.huge_pages else (), tree_exclusive=True)
            if err:
                return Result(leaf, err)
            tdcs = td.tdcs
            if entry.state not in (SeptState.NL_MAPPED, SeptState.NL_BLOCKED):
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
            sept_page = self.pamt.entry(entry.hpa >> 12)
            if tdcs.op_state == OpState.RUNNABLE:
                if entry.state != SeptState.NL_BLOCKED:
                    return Result(leaf, st.TDX_GPA_RANGE_NOT_BLOCKED | RCX)
                if not tdcs.is_tlb_tracked(sept_page.bepoch):
                    return Result(leaf, st.TDX_TLB_TRACKING_NOT_DONE | RCX)
            kids = [tdcs.sept.entries.get((0, gpa + i * PAGE_SIZE)) for i in range(512)]
            base = kids[0].hpa if kids[0] is not None else -1
            if (base < 0 or base % PAGE_2M or any(
                    k is None or k.state != kids[0].state or k.hpa != base + i * PAGE_SIZE
                    for i, k in enumerate(kids)) or kids[0].state not in _PROMOTABLE):
                return Result(leaf, st.TDX_EPT_INVALID_PROMOTE_CONDITIONS | RCX)
            big = self.pamt.range_entry(base)
            if not call.exclusive(big.lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
            yield IN_SEAMCALL
            pair = big.pages if big.pt == PageType.PT_PAMT else (0, 0)
            small_state = kids[0].state
            for i, k in enumerate(kids):
                e = self.pamt.entry((base >> 12) + i)
                e.pt, e.owner, e.bepoch = PageType.PT_NDA, 0, 0
                k.state, k.hpa = SeptState.FREE, 0
            self.pamt.pamt_pages.difference_update(p >> 12 for p in pair if p)
            big.pt, big.owner, big.page0, big.page1 = PageType.PT_REG, td.pa, 0, 0
            freed = entry.hpa
            sept_page.pt, sept_page.owner, sept_page.bepoch = PageType.PT_NDA, 0, 0
            td.chldcnt -= 1
            entry.state, entry.hpa = small_state, base
            res = Result(leaf, OK, rcx=freed, rdx=pair[0], r8=pair[1])
            res.pamt_removal_hint = self.dynamic_pamt and pair != (0, 0)
            return res
        finally:
            call.release()


_DEMOTE_ALLOWED = frozenset({SeptState.MAPPED, SeptState.BLOCKED, SeptState.PENDING,
                             SeptState.PENDING_BLOCKED})
_UNBLOCKED = {SeptState.BLOCKED: SeptState.MAPPED, SeptState.PENDING_BLOCKED: SeptState.PENDING}
_PROMOTABLE = frozenset({SeptState.MAPPED, SeptState.PENDING})
