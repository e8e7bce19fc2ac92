"""SEAMCALLs that build a TD: create it, configure its key, add control pages, initialise,
add vCPUs, add initial memory and S-EPT pages, measure, finalise, and AUG at runtime.

Lifecycle and op-state rules, S-EPT states, PAMT type and owner per handler: [M15] (module
1.5.01 `tdh_mng_create.c`, `tdh_mng_add_cx.c`, `tdh_mem_page_add.c`, `tdh_mem_page_aug.c`,
`tdh_mem_sept_add.c`, `include/auto_gen/sept_state_lookup.c`, `pamt_manager.h`).
"""

from __future__ import annotations

from . import status as st
from .core import IN_SEAMCALL, Call, Result
from .leaves import Leaf
from .pamt import PT_EPT, PT_REG, PT_TDCX, PT_TDR, PT_TDVPR, PageType
from .sept import AUG_ALLOWED, SEPT_FREE, SEPT_MAPPED, SEPT_PENDING, SeptState
from .td import (
    HKID_ASSIGNED,
    HKID_FREE,
    OP_INITIALIZED,
    OP_RUNNABLE,
    TD_HKID_ASSIGNED,
    TD_KEYS_CONFIGURED,
    VCPU_READY,
    VCPU_UNINITIALIZED,
    Tdcs,
    Tdr,
    Tdvps,
)

RCX, RDX, R8 = st.TDX_OPERAND_ID_RCX, st.TDX_OPERAND_ID_RDX, st.TDX_OPERAND_ID_R8
OK = st.TDX_SUCCESS
SEPT_ROOT_PAGE_INDEX = 3  # TDCS page 3 is the S-EPT root ([M15] `td_control_structures.h`)


class BuildMixin:
    def _give_page(self, pa: int, pt: PageType, td: Tdr) -> None:
        """Assign a page to a TD: PAMT type/owner, child count, and cache lines written with
        the TD's HKID (which is why the host must WBINVD before reusing the page)."""
        e = self.pamt.entry(pa >> 12)
        e.pt = pt
        e.owner = td.pa
        td.chldcnt += 1
        self._dirty(pa, td.hkid)

    # TDH.MNG.CREATE ----------------------------------------------------------------------
    def _h_tdh_mng_create(self, tdr: int, hkid: int, lp: int):
        """Module 1.5 `tdh_mng_create.c`: the HKID (RDX) is checked *before* the TDR page
        (RCX, must be PT_NDA, locked exclusively), then the KOT lock, then the KOT entry. The
        new TDR's PAMT entry gets PT_TDR with owner 0 (a TDR owns itself)."""
        call = Call(f"TDH.MNG.CREATE@LP{lp}")
        try:
            if hkid not in self.private_hkids:
                return Result("TDH.MNG.CREATE", st.TDX_OPERAND_INVALID | RDX)
            err = self._new_page_error(call, tdr, RCX)
            if err:
                return Result("TDH.MNG.CREATE", err)
            if not call.exclusive(self.kot_lock):
                return Result("TDH.MNG.CREATE", st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_KOT)
            if self.kot[hkid] != HKID_FREE:
                return Result("TDH.MNG.CREATE", st.TDX_HKID_NOT_FREE)
            yield IN_SEAMCALL
            td = Tdr(tdr, hkid)
            e = self.pamt.entry(tdr >> 12)
            e.pt, e.owner = PT_TDR, 0
            self._dirty(tdr, self.global_keyid)
            self.tds[tdr] = td
            self.kot[hkid] = HKID_ASSIGNED
            return Result("TDH.MNG.CREATE", OK)
        finally:
            call.release()

    # TDH.MNG.KEY.CONFIG ------------------------------------------------------------------
    def _h_tdh_mng_key_config(self, tdr: int, lp: int):
        call = Call(f"TDH.MNG.KEY.CONFIG@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RCX, exclusive=True)
            if err:
                return Result("TDH.MNG.KEY.CONFIG", err)
            if td.fatal:  # module 1.5 `tdh_mng_key_config.c`: FATAL before the lifecycle
                return Result("TDH.MNG.KEY.CONFIG", st.TDX_TD_FATAL)
            if td.lifecycle != TD_HKID_ASSIGNED:
                return Result("TDH.MNG.KEY.CONFIG", st.TDX_LIFECYCLE_STATE_INCORRECT)
            pkg = self.package_of(lp)
            if pkg in td.pkg_config:
                return Result("TDH.MNG.KEY.CONFIG", st.TDX_KEY_CONFIGURED)
            yield IN_SEAMCALL
            td.pkg_config.add(pkg)
            if len(td.pkg_config) == self.num_packages:
                td.lifecycle = TD_KEYS_CONFIGURED
            return Result("TDH.MNG.KEY.CONFIG", OK)
        finally:
            call.release()

    # TDH.MNG.ADDCX -----------------------------------------------------------------------
    def _h_tdh_mng_addcx(self, tdr: int, page: int, lp: int):
        call = Call(f"TDH.MNG.ADDCX@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RDX, exclusive=True)
            if err:
                return Result("TDH.MNG.ADDCX", err)
            if td.fatal:
                return Result("TDH.MNG.ADDCX", st.TDX_TD_FATAL)
            if td.lifecycle != TD_KEYS_CONFIGURED:
                return Result("TDH.MNG.ADDCX", st.TDX_TD_KEYS_NOT_CONFIGURED)
            if len(td.tdcx_pa) >= self.tdcs_pages:
                return Result("TDH.MNG.ADDCX", st.TDX_TDCX_NUM_INCORRECT)
            err = self._new_page_error(call, page, RCX)
            if err:
                return Result("TDH.MNG.ADDCX", err)
            yield IN_SEAMCALL
            self._give_page(page, PT_TDCX, td)
            td.tdcx_pa.append(page)
            if len(td.tdcx_pa) == self.tdcs_pages:
                td.tdcs = Tdcs(td, td.tdcx_pa[SEPT_ROOT_PAGE_INDEX])
            return Result("TDH.MNG.ADDCX", OK)
        finally:
            call.release()

    # TDH.MNG.INIT ------------------------------------------------------------------------
    def _h_tdh_mng_init(self, tdr: int, td_params: int = 0, *, lp: int):
        call = Call(f"TDH.MNG.INIT@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RCX, exclusive=True)
            if err:
                return Result("TDH.MNG.INIT", err)
            # check_state_map_tdcs_and_lock(TDX_LOCK_NO_LOCK): the TDR is held exclusively.
            err = self._td_state_error(call, td, Leaf.TDH_MNG_INIT, lock_op_state=False)
            if err:
                return Result("TDH.MNG.INIT", err)
            yield IN_SEAMCALL
            td.tdcs.op_state = OP_INITIALIZED
            return Result("TDH.MNG.INIT", OK)
        finally:
            call.release()

    # TDH.VP.CREATE -----------------------------------------------------------------------
    def _h_tdh_vp_create(self, tdr: int, tdvpr: int, lp: int):
        call = Call(f"TDH.VP.CREATE@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RDX)
            if err:
                return Result("TDH.VP.CREATE", err)
            err = self._td_state_error(call, td, Leaf.TDH_VP_CREATE)
            if err:
                return Result("TDH.VP.CREATE", err)
            err = self._new_page_error(call, tdvpr, RCX)
            if err:
                return Result("TDH.VP.CREATE", err)
            yield IN_SEAMCALL
            self._give_page(tdvpr, PT_TDVPR, td)
            vp = self.vcpus[tdvpr] = td.vcpus[tdvpr] = Tdvps(tdvpr, td)
            del vp  # state stays VCPU_UNINITIALIZED until TDH.VP.INIT
            return Result("TDH.VP.CREATE", OK)
        finally:
            call.release()

    # TDH.VP.ADDCX ------------------------------------------------------------------------
    def _h_tdh_vp_addcx(self, tdvpr: int, page: int, lp: int):
        call = Call(f"TDH.VP.ADDCX@LP{lp}")
        try:
            vp, err = self._lock_vcpu(call, tdvpr, RDX, exclusive=True)
            if err:
                return Result("TDH.VP.ADDCX", err)
            err = self._td_state_error(call, vp.td, Leaf.TDH_VP_ADDCX)
            if err:
                return Result("TDH.VP.ADDCX", err)
            if vp.state != VCPU_UNINITIALIZED:
                return Result("TDH.VP.ADDCX", st.TDX_VCPU_STATE_INCORRECT)
            if len(vp.tdcx_pa) >= self.tdcx_per_vcpu:
                return Result("TDH.VP.ADDCX", st.TDX_TDCX_NUM_INCORRECT)
            err = self._new_page_error(call, page, RCX)
            if err:
                return Result("TDH.VP.ADDCX", err)
            yield IN_SEAMCALL
            self._give_page(page, PT_TDCX, vp.td)
            vp.tdcx_pa.append(page)
            return Result("TDH.VP.ADDCX", OK)
        finally:
            call.release()

    # TDH.VP.INIT -------------------------------------------------------------------------
    def _h_tdh_vp_init(self, tdvpr: int, initial_rcx: int = 0, x2apicid: int = 0, *,
                       lp: int):
        """Initialises the vCPU and associates it with this LP (`associate_vcpu_initial`,
        [M15]): from here on only TDH.VP.FLUSH on this LP can undo that."""
        call = Call(f"TDH.VP.INIT@LP{lp}")
        try:
            vp, err = self._lock_vcpu(call, tdvpr, RCX, exclusive=True)
            if err:
                return Result("TDH.VP.INIT", err)
            err = self._td_state_error(call, vp.td, Leaf.TDH_VP_INIT)
            if err:
                return Result("TDH.VP.INIT", err)
            if len(vp.tdcx_pa) != self.tdcx_per_vcpu:  # map_tdvps, before the vCPU state
                return Result("TDH.VP.INIT", st.TDX_TDCX_NUM_INCORRECT)
            if vp.state != VCPU_UNINITIALIZED:
                return Result("TDH.VP.INIT", st.TDX_VCPU_STATE_INCORRECT)
            yield IN_SEAMCALL
            self._associate(vp, lp)
            vp.state = VCPU_READY
            return Result("TDH.VP.INIT", OK)
        finally:
            call.release()

    def _associate(self, vp: Tdvps, lp: int) -> None:
        if vp.assoc_lpid == -1:
            vp.assoc_lpid = lp
            vp.td.tdcs.num_assoc_vcpus += 1

    # TDH.MEM.SEPT.ADD --------------------------------------------------------------------
    def _h_tdh_mem_sept_add(self, tdr: int, gpa: int, level: int, page: int, lp: int):
        call = Call(f"TDH.MEM.SEPT.ADD@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(
                call, tdr, gpa, level, Leaf.TDH_MEM_SEPT_ADD, (1, 2, 3),
                tree_exclusive=False)
            if err:
                return Result("TDH.MEM.SEPT.ADD", err)
            if entry.state != SEPT_FREE:
                return Result("TDH.MEM.SEPT.ADD", st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
            err = self._new_page_error(call, page, R8)
            if err:
                return Result("TDH.MEM.SEPT.ADD", err)
            yield IN_SEAMCALL
            self._give_page(page, PT_EPT, td)
            entry.state, entry.hpa = SeptState.NL_MAPPED, page
            return Result("TDH.MEM.SEPT.ADD", OK)
        finally:
            call.release()

    # TDH.MEM.PAGE.ADD (build time, TDR exclusive) -----------------------------------------
    def _h_tdh_mem_page_add(self, tdr: int, gpa: int, page: int, source: int = 0, *,
                           lp: int):
        call = Call(f"TDH.MEM.PAGE.ADD@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RDX, exclusive=True)
            if err:
                return Result("TDH.MEM.PAGE.ADD", err)
            err = self._td_state_error(call, td, Leaf.TDH_MEM_PAGE_ADD, lock_op_state=False)
            if err:
                return Result("TDH.MEM.PAGE.ADD", err)
            err = self._gpa_error(gpa, 0)
            if err:
                return Result("TDH.MEM.PAGE.ADD", err)
            entry = td.tdcs.sept.walk(gpa, 0)
            if entry is None:
                return Result("TDH.MEM.PAGE.ADD", st.TDX_EPT_WALK_FAILED | RCX)
            if entry.state != SEPT_FREE:
                return Result("TDH.MEM.PAGE.ADD", st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
            err = self._new_page_error(call, page, R8)
            if err:
                return Result("TDH.MEM.PAGE.ADD", err)
            yield IN_SEAMCALL
            self._give_page(page, PT_REG, td)
            entry.state, entry.hpa = SEPT_MAPPED, page
            return Result("TDH.MEM.PAGE.ADD", OK)
        finally:
            call.release()

    # TDH.MR.EXTEND / TDH.MR.FINALIZE (TDR exclusive) --------------------------------------
    def _h_tdh_mr_extend(self, tdr: int, gpa: int, lp: int):
        call = Call(f"TDH.MR.EXTEND@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RDX, exclusive=True)
            if err:
                return Result("TDH.MR.EXTEND", err)
            err = self._td_state_error(call, td, Leaf.TDH_MR_EXTEND, lock_op_state=False)
            if err:
                return Result("TDH.MR.EXTEND", err)
            if gpa < 0 or gpa % 256 or self._gpa_error(gpa & ~0xFFF, 0):
                return Result("TDH.MR.EXTEND", st.TDX_OPERAND_INVALID | RCX)
            entry = td.tdcs.sept.walk(gpa & ~0xFFF, 0)
            if entry is None:
                return Result("TDH.MR.EXTEND", st.TDX_EPT_WALK_FAILED | RCX)
            if entry.state != SEPT_MAPPED:
                return Result("TDH.MR.EXTEND", st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
            yield IN_SEAMCALL
            return Result("TDH.MR.EXTEND", OK)
        finally:
            call.release()

    def _h_tdh_mr_finalize(self, tdr: int, lp: int):
        call = Call(f"TDH.MR.FINALIZE@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RCX, exclusive=True)
            if err:
                return Result("TDH.MR.FINALIZE", err)
            err = self._td_state_error(call, td, Leaf.TDH_MR_FINALIZE, lock_op_state=False)
            if err:
                return Result("TDH.MR.FINALIZE", err)
            yield IN_SEAMCALL
            td.tdcs.op_state = OP_RUNNABLE
            return Result("TDH.MR.FINALIZE", OK)
        finally:
            call.release()

    # TDH.MEM.PAGE.AUG (runtime, S-EPT tree shared) ----------------------------------------
    def _h_tdh_mem_page_aug(self, tdr: int, gpa: int, level: int, page: int, lp: int):
        call = Call(f"TDH.MEM.PAGE.AUG@LP{lp}")
        try:
            levels = (0, 1) if self.huge_pages else (0,)
            td, entry, err = self._lock_sept_entry(call, tdr, gpa, level, Leaf.TDH_MEM_PAGE_AUG,
                                                   levels, tree_exclusive=False)
            if err:
                return Result("TDH.MEM.PAGE.AUG", err)
            if entry.state not in AUG_ALLOWED:
                return Result("TDH.MEM.PAGE.AUG", st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
            if level == 1:  # a 2 MB leaf: PAMT_2M only, no PAMT_4K pair ([SEAN-V5-29])
                err = self._new_2m_page_error(call, page, R8)
            else:
                err = self._new_page_error(call, page, R8)
            if err:
                return Result("TDH.MEM.PAGE.AUG", err)
            yield IN_SEAMCALL
            if level == 1:
                self._give_2m_page(page, td)
            else:
                self._give_page(page, PT_REG, td)
            entry.state, entry.hpa = SEPT_PENDING, page
            return Result("TDH.MEM.PAGE.AUG", OK)
        finally:
            call.release()
