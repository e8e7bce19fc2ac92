"""SEAMCALLs that release a TD's key and give its pages back.

Order enforced by the module ([M15]: module 1.5.01
`tdh_mng_vpflushdone.c`, `tdh_phymem_cache_wb.c`, `tdh_mng_key_freeid.c`,
`tdh_phymem_page_reclaim.c`, `tdh_phymem_page_wbinvd.c`):
VPFLUSHDONE (no vCPU still associated) -> TD_BLOCKED, KOT HKID_FLUSHED;
CACHE.WB on every package -> write-back bitmap empty; KEY.FREEID -> TD_TEARDOWN, KOT FREE;
only then PAGE.RECLAIM, and the TDR last (child count 0).
"""

from __future__ import annotations

from . import status as st
from .core import IN_SEAMCALL, Call, Result
from .leaves import TDH_PHYMEM_CACHEWB_RESUME_CMD, TDH_PHYMEM_CACHEWB_START_CMD
from .pamt import KEYID_SHIFT, PA_MASK, PAGE_2M, PT_NDA, PT_PAMT, PT_REG, PT_RSVD, PT_TDR
from .td import (
    HKID_FLUSHED,
    HKID_FREE,
    OP_UNINITIALIZED,
    TD_BLOCKED,
    TD_HKID_ASSIGNED,
    TD_KEYS_CONFIGURED,
    TD_TEARDOWN,
)

RCX = st.TDX_OPERAND_ID_RCX
OK = st.TDX_SUCCESS


class TeardownMixin:
    # TDH.MNG.VPFLUSHDONE ------------------------------------------------------------------
    def _h_tdh_mng_vpflushdone(self, tdr: int, lp: int):
        leaf = "TDH.MNG.VPFLUSHDONE"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RCX, exclusive=True)
            if err:
                return Result(leaf, err)
            if not call.exclusive(self.kot_lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_KOT)
            if td.lifecycle not in (TD_KEYS_CONFIGURED, TD_HKID_ASSIGNED):
                return Result(leaf, st.TDX_LIFECYCLE_STATE_INCORRECT)
            # Module 1.5 `tdh_mng_vpflushdone.c`: only if the TDCS exists and its OP_STATE is
            # any initialised state is num_assoc_vcpus looked at.
            if (td.tdcs is not None and td.tdcs.op_state != OP_UNINITIALIZED
                    and td.tdcs.num_assoc_vcpus):
                return Result(leaf, st.TDX_FLUSHVP_NOT_DONE)
            yield IN_SEAMCALL
            td.lifecycle = TD_BLOCKED
            self.kot[td.hkid] = HKID_FLUSHED
            self.wbinvd_bitmap[td.hkid] = set(range(self.num_packages))
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.PHYMEM.CACHE.WB ------------------------------------------------------------------
    def _h_tdh_phymem_cache_wb(self, resume: int, lp: int):
        """Writes back this package's caches for every HKID in HKID_FLUSHED. The work comes in
        `cache_wb_rounds` slices; an unfinished one returns TDX_INTERRUPTED_RESUMABLE and KVM
        calls again with resume=1 (kernel retries up to TDX_SEAMCALL_RETRIES).

        Module 1.5 `tdh_phymem_cache_wb.c`: RCX > 1 -> OPERAND_INVALID | RCX; package mutex
        (BUSY | WBCACHE); KOT shared (BUSY | KOT). START drops any saved interruption point and
        collects *every* HKID in HKID_FLUSHED, whether or not this package already wrote it
        back (none -> TDX_NO_HKID_READY_TO_WBCACHE); RESUME with no saved point ->
        TDX_WBCACHE_RESUME_ERROR. On completion this package's bit is cleared in each
        collected HKID's wbinvd_bitmap."""
        leaf = "TDH.PHYMEM.CACHE.WB"
        call = Call(f"{leaf}@LP{lp}")
        try:
            if resume not in (TDH_PHYMEM_CACHEWB_START_CMD, TDH_PHYMEM_CACHEWB_RESUME_CMD):
                return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
            pkg = self.package_of(lp)
            if not call.exclusive(self.wbcache_lock[pkg]):
                return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_WBCACHE)
            if not call.shared(self.kot_lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_KOT)
            saved = self.wbcache_saved[pkg]
            if resume == TDH_PHYMEM_CACHEWB_RESUME_CMD:
                if saved is None:
                    return Result(leaf, st.TDX_WBCACHE_RESUME_ERROR)
                hkids, left = saved
            else:
                self.wbcache_saved[pkg] = None
                hkids = [h for h, s in self.kot.items() if s == HKID_FLUSHED]
                if not hkids:
                    return Result(leaf, st.TDX_NO_HKID_READY_TO_WBCACHE)
                left = self.cache_wb_rounds
            yield IN_SEAMCALL
            left -= 1
            if left > 0:
                self.wbcache_saved[pkg] = (hkids, left)
                return Result(leaf, st.TDX_INTERRUPTED_RESUMABLE)
            self.wbcache_saved[pkg] = None
            for h in hkids:
                bitmap = self.wbinvd_bitmap.setdefault(h, set())
                bitmap.discard(pkg)
                if not bitmap:
                    self._clean_keyid(h)
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.MNG.KEY.FREEID -------------------------------------------------------------------
    def _h_tdh_mng_key_freeid(self, tdr: int, lp: int):
        leaf = "TDH.MNG.KEY.FREEID"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RCX, exclusive=True)
            if err:
                return Result(leaf, err)
            # Module 1.5 `tdh_mng_key_freeid.c`: the lifecycle is checked *before* the KOT
            # lock is taken (VPFLUSHDONE takes the KOT lock first).
            if td.lifecycle != TD_BLOCKED:
                return Result(leaf, st.TDX_LIFECYCLE_STATE_INCORRECT)
            if not call.exclusive(self.kot_lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_KOT)
            if self.wbinvd_bitmap.get(td.hkid):
                return Result(leaf, st.TDX_WBCACHE_NOT_COMPLETE)
            yield IN_SEAMCALL
            self.kot[td.hkid] = HKID_FREE
            td.lifecycle = TD_TEARDOWN
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.PHYMEM.PAGE.RECLAIM --------------------------------------------------------------
    def _h_tdh_phymem_page_reclaim(self, page: int, lp: int):
        """Module 1.5 `tdh_phymem_page_reclaim.c`, in its order: PA 4K-aligned, below MAX_PA,
        no KeyID bits (OPERAND_INVALID | RCX); inside a TDMR (ADDR_RANGE_ERROR | RCX);
        `pamt_walk` *not* to a fixed size, taking the leaf entry exclusively: the PAMT_2M
        entry shared and, if it is a 2 MB page, that entry promoted to exclusive, else the 4K
        entry exclusively (BUSY | RCX); type not NDA/RSVD (PAGE_METADATA_INCORRECT | RCX).
        From here the outputs are set, failure or not: RCX = page type, RDX = owner (the TDR's
        PA; 0 for a TDR), R8 = the page level (0 = 4K, 1 = 2M). A 2 MB page must be named by
        its 2 MB-aligned PA (OPERAND_INVALID | RCX). A child page: its TDR shared (BUSY |
        TDR), lifecycle TD_TEARDOWN (LIFECYCLE_STATE_INCORRECT), child count minus 1 or 512.
        The TDR itself: TD_TEARDOWN, then no children left (TD_ASSOCIATED_PAGES_EXIST).
        Dynamic PAMT (module 2.0) also refuses its PAMT pages (PT_PAMT)."""
        leaf = "TDH.PHYMEM.PAGE.RECLAIM"
        call = Call(f"{leaf}@LP{lp}")
        try:
            err = self._hpa_error(page, RCX)
            if err:
                return Result(leaf, err)
            pamt = self.pamt
            level, e = 0, None
            r = pamt.ranges.get(page >> 21)
            if r is not None:
                if not self.dynamic_pamt and not call.shared(r.lock):
                    return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
                if r.pt == PT_REG:  # the walk ends at a 2 MB leaf
                    if not (call.promote(r.lock) if not self.dynamic_pamt
                            else call.exclusive(r.lock)):
                        return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
                    level, e = 1, r
            if e is None:
                e = pamt.entry(page >> 12)
                if not call.exclusive(e.lock):
                    return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
            if e.pt in (PT_NDA, PT_RSVD, PT_PAMT):
                return Result(leaf, st.TDX_PAGE_METADATA_INCORRECT | RCX)
            out = {"rcx": int(e.pt), "rdx": e.owner, "r8": level}
            if level and page % PAGE_2M:
                return Result(leaf, st.TDX_OPERAND_INVALID | RCX, **out)
            is_tdr = e.pt == PT_TDR
            td = self.tds[page] if is_tdr else self.tds[e.owner]
            if not is_tdr and not call.shared(pamt.entry(td.pa >> 12).lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TDR, **out)
            if td.lifecycle != TD_TEARDOWN:
                return Result(leaf, st.TDX_LIFECYCLE_STATE_INCORRECT, **out)
            if is_tdr and td.chldcnt:
                return Result(leaf, st.TDX_TD_ASSOCIATED_PAGES_EXIST, **out)
            yield IN_SEAMCALL
            if level:
                self._free_2m_page(page, td)
                self.reclaimed += 1
                return Result(leaf, OK, **out)
            e.pt, e.owner, e.bepoch = PT_NDA, 0, 0
            if is_tdr:
                del self.tds[td.pa]
                for vpa in td.vcpus:
                    self.vcpus.pop(vpa, None)
            else:
                td.chldcnt -= 1
            self.reclaimed += 1
            return self._removal_hint(Result(leaf, OK, **out), page)
        finally:
            call.release()

    # TDH.PHYMEM.PAGE.WBINVD ---------------------------------------------------------------
    def _h_tdh_phymem_page_wbinvd(self, pa_with_keyid: int, lp: int):
        """Module 1.5 `tdh_phymem_page_wbinvd.c`: the KeyID is taken from the PA's upper bits
        (any KeyID: no check) and cleared; then the page is an explicit 4K operand locked
        *shared* with PT_NDA expected (`check_and_lock_explicit_4k_private_hpa`): aligned
        (OPERAND_INVALID | RCX), in a TDMR (ADDR_RANGE_ERROR | RCX), the PAMT_2M entry not a 2
        MB page (PAGE_METADATA_INCORRECT | RCX), the 4K entry's lock (BUSY | RCX), PT_NDA
        (PAGE_METADATA_INCORRECT | RCX). No lifecycle check: once a page is PT_NDA the host
        may write it back at any time."""
        leaf = "TDH.PHYMEM.PAGE.WBINVD"
        call = Call(f"{leaf}@LP{lp}")
        try:
            if not 0 <= pa_with_keyid < 1 << 64:  # not a register value
                return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
            keyid, pa = pa_with_keyid >> KEYID_SHIFT, pa_with_keyid & PA_MASK
            e, err = self._lock_explicit(call, pa, RCX, PT_NDA, exclusive=False)
            if err:
                return Result(leaf, err)
            yield from ()
            self._write_back_page(pa, keyid)
            return Result(leaf, OK)
        finally:
            call.release()
