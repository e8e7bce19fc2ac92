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
from .pamt import KEYID_SHIFT, PA_MASK, PT_NDA, PT_PAMT, PT_RSVD, PT_TDR
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
        """Module 1.5 `tdh_phymem_page_reclaim.c`, in its order: PA aligned with no KeyID bits
        (OPERAND_INVALID | RCX); inside a TDMR (ADDR_RANGE_ERROR | RCX); PAMT entry locked
        exclusively (BUSY | RCX); type not NDA/RSVD (PAGE_METADATA_INCORRECT | RCX). Then for a
        child page: its TDR shared (BUSY | TDR), lifecycle TD_TEARDOWN, chldcnt -= 1; for the
        TDR itself: lifecycle TD_TEARDOWN, then chldcnt == 0 (TD_ASSOCIATED_PAGES_EXIST).
        Outputs RCX = page type, RDX = owner (0 for a TDR), R8 = size (0 = 4K)."""
        leaf = "TDH.PHYMEM.PAGE.RECLAIM"
        call = Call(f"{leaf}@LP{lp}")
        try:
            err = self._hpa_error(page, RCX)
            if err:
                return Result(leaf, err)
            e = self.pamt.entry(page >> 12)
            if not call.exclusive(e.lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | RCX)
            if e.pt in (PT_NDA, PT_RSVD, PT_PAMT):
                return Result(leaf, st.TDX_PAGE_METADATA_INCORRECT | RCX)
            is_tdr = e.pt == PT_TDR
            td = self.tds[page] if is_tdr else self.tds[e.owner]
            if not is_tdr and not call.shared(self.pamt.entry(td.pa >> 12).lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TDR)
            if td.lifecycle != TD_TEARDOWN:
                return Result(leaf, st.TDX_LIFECYCLE_STATE_INCORRECT)
            if is_tdr and td.chldcnt:
                return Result(leaf, st.TDX_TD_ASSOCIATED_PAGES_EXIST)
            yield IN_SEAMCALL
            pt, owner = e.pt, e.owner
            e.pt, e.owner, e.bepoch = PT_NDA, 0, 0
            if is_tdr:
                del self.tds[td.pa]
                for vpa in td.vcpus:
                    self.vcpus.pop(vpa, None)
            else:
                td.chldcnt -= 1
            self.reclaimed += 1
            return self._removal_hint(Result(leaf, OK, rcx=int(pt), rdx=owner, r8=0), page)
        finally:
            call.release()

    # TDH.PHYMEM.PAGE.WBINVD ---------------------------------------------------------------
    def _h_tdh_phymem_page_wbinvd(self, pa_with_keyid: int, lp: int):
        """Write back and invalidate one page's cache lines under the KeyID in the PA's upper
        bits. The page must already be PT_NDA; no lifecycle check ([M15]
        `tdh_phymem_page_wbinvd.c`)."""
        leaf = "TDH.PHYMEM.PAGE.WBINVD"
        if pa_with_keyid < 0 or pa_with_keyid >> 64:
            return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
        keyid, pa = pa_with_keyid >> KEYID_SHIFT, pa_with_keyid & PA_MASK
        err = self._hpa_error(pa, RCX)
        if err:
            return Result(leaf, err)
        yield from ()
        if self.pamt.page_type(pa) != PT_NDA:
            return Result(leaf, st.TDX_PAGE_METADATA_INCORRECT | RCX)
        lines = self.dirty_keyids.get(keyid)
        if lines is not None:
            lines.discard(pa >> 12)
        return Result(leaf, OK)
