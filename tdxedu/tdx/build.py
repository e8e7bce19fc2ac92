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
from .opstate import ALLOWED as OP_STATE_ALLOWED
from .pamt import PAGE_SIZE, PT_EPT, PT_REG, PT_TDCX, PT_TDR, PT_TDVPR, PageType
from .sept import AUG_ALLOWED, SEPT_FREE, SEPT_MAPPED, SEPT_PENDING, SeptState, arch_septe_details
from .td import (
    HKID_ASSIGNED,
    HKID_FREE,
    MAX_NUM_TDCS_PAGES,
    MAX_TDCX_PER_VCPU,
    MIN_NUM_TDCS_PAGES,
    MIN_TDCX_PER_VCPU,
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

RCX, RDX, R8, R9 = (st.TDX_OPERAND_ID_RCX, st.TDX_OPERAND_ID_RDX, st.TDX_OPERAND_ID_R8,
                    st.TDX_OPERAND_ID_R9)
TD_PARAMS_ALIGN_IN_BYTES = 1024  # module 1.5 `include/tdx_api_defs.h`
OK = st.TDX_SUCCESS
SEPT_ROOT_PAGE_INDEX = 3  # TDCS page 3 is the S-EPT root ([M15] `td_control_structures.h`)
NULL_PA = (1 << 64) - 1  # module `x86_defs.h`: "no page"


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
        """Module 1.5 `tdh_mng_add_cx.c`: TDR (RDX) exclusively, FATAL, lifecycle, then the
        count: up to MAX_NUM_TDCS_PAGES (9) pages, more is TDCX_NUM_INCORRECT. The new page
        (RCX) is checked before anything else is looked at. Page MIN_NUM_TDCS_PAGES (6)
        completes the TDCS (OP_STATE UNINITIALIZED, so TDH.MNG.INIT can run); pages 7..9 read
        OP_STATE first and are refused once the TD is initialised (row [1] of the op-state
        table allows UNINITIALIZED only): OP_STATE_INCORRECT, no lock taken."""
        call = Call(f"TDH.MNG.ADDCX@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RDX, exclusive=True)
            if err:
                return Result("TDH.MNG.ADDCX", err)
            if td.fatal:
                return Result("TDH.MNG.ADDCX", st.TDX_TD_FATAL)
            if td.lifecycle != TD_KEYS_CONFIGURED:
                return Result("TDH.MNG.ADDCX", st.TDX_TD_KEYS_NOT_CONFIGURED)
            n = len(td.tdcx_pa)
            if n > MAX_NUM_TDCS_PAGES - 1:
                return Result("TDH.MNG.ADDCX", st.TDX_TDCX_NUM_INCORRECT)
            err = self._new_page_error(call, page, RCX)
            if err:
                return Result("TDH.MNG.ADDCX", err)
            if n + 1 > MIN_NUM_TDCS_PAGES and td.tdcs.op_state not in OP_STATE_ALLOWED[
                    Leaf.TDH_MNG_ADDCX]:
                return Result("TDH.MNG.ADDCX", st.TDX_OP_STATE_INCORRECT)
            yield IN_SEAMCALL
            self._give_page(page, PT_TDCX, td)
            td.tdcx_pa.append(page)
            if n + 1 == MIN_NUM_TDCS_PAGES:
                td.tdcs = Tdcs(td, td.tdcx_pa[SEPT_ROOT_PAGE_INDEX])
            return Result("TDH.MNG.ADDCX", OK)
        finally:
            call.release()

    # TDH.MNG.INIT ------------------------------------------------------------------------
    def _h_tdh_mng_init(self, tdr: int, td_params: int = 0, attributes: int = 0, *, lp: int):
        """Module 1.5 `tdh_mng_init.c`: TDR (RCX) exclusively, the TD state without the
        OP_STATE lock (row [21]: UNINITIALIZED only), then TD_PARAMS' PA (RDX): 1024-aligned,
        below MAX_PA and with a shared KeyID (`shared_hpa_check_with_pwr_2_alignment`),
        else OPERAND_INVALID | RDX. The TD_PARAMS contents are not modelled except ATTRIBUTES,
        passed here as `attributes` (bit 0 DEBUG decides what TDH.MNG.RD / TDH.VP.RD may
        read); the module checks them, and CPUID/XFAM/MAX_VCPUS, with statuses we omit."""
        call = Call(f"TDH.MNG.INIT@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RCX, exclusive=True)
            if err:
                return Result("TDH.MNG.INIT", err)
            # check_state_map_tdcs_and_lock(TDX_LOCK_NO_LOCK): the TDR is held exclusively.
            err = self._td_state_error(call, td, Leaf.TDH_MNG_INIT, lock_op_state=False)
            if err:
                return Result("TDH.MNG.INIT", err)
            if self._shared_hpa_error(td_params, TD_PARAMS_ALIGN_IN_BYTES):
                return Result("TDH.MNG.INIT", st.TDX_OPERAND_INVALID | RDX)
            yield IN_SEAMCALL
            td.tdcs.attributes = attributes
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
        """Module 1.5 `tdh_vp_addcx.c`: TDVPR (RDX) exclusively, its TDR shared (BUSY | TDR),
        the TD state (row [4]: INITIALIZED only), VCPU_UNINITIALIZED, then the count: the
        TDVPS may grow to MAX_TDVPS_PAGES (15 = the TDVPR + 14 TDCX), then the page (RCX)."""
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
            if len(vp.tdcx_pa) >= MAX_TDCX_PER_VCPU:
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
    def _h_tdh_vp_init(self, tdvpr: int, initial_rcx: int = 0, x2apicid: int = 0,
                       version: int = 1, *, lp: int):
        """Module 1.5.05 `tdh_vp_init.c` (the kernel issues version 1, `tdh_vp_init` in
        `arch/x86/virt/vmx/tdx/tdx.c`): TDVPR (RCX) exclusively; its TDR shared, exclusively
        for version 1 (BUSY | TDR); the TD state (row [22]: INITIALIZED only); `map_tdvps`
        needs the TDVPR + 5 TDCX pages (TDCX_NUM_INCORRECT); VCPU_UNINITIALIZED; then the
        vCPU gets the next VCPU_INDEX and, for version 1, its x2APIC id (R8): above 32 bits
        -> OPERAND_INVALID | R8 (the index is given back), equal to an earlier vCPU's ->
        TDX_X2APIC_ID_NOT_UNIQUE with that id as the operand (the module does not give the
        index back on this path). Then `associate_vcpu_initial` associates the vCPU with this
        LP: from here on only TDH.VP.FLUSH on this LP can undo that. MAX_VCPUS and the TSC
        check are not modelled (no TD_PARAMS)."""
        call = Call(f"TDH.VP.INIT@LP{lp}")
        try:
            vp, err = self._lock_vcpu(call, tdvpr, RCX, exclusive=True,
                                      tdr_exclusive=version > 0)
            if err:
                return Result("TDH.VP.INIT", err)
            err = self._td_state_error(call, vp.td, Leaf.TDH_VP_INIT)
            if err:
                return Result("TDH.VP.INIT", err)
            if len(vp.tdcx_pa) < MIN_TDCX_PER_VCPU:  # map_tdvps, before the vCPU state
                return Result("TDH.VP.INIT", st.TDX_TDCX_NUM_INCORRECT)
            if vp.state != VCPU_UNINITIALIZED:
                return Result("TDH.VP.INIT", st.TDX_VCPU_STATE_INCORRECT)
            tdcs = vp.td.tdcs
            index = tdcs.num_vcpus
            tdcs.num_vcpus += 1
            if version > 0:
                if x2apicid > 0xFFFF_FFFF or x2apicid < 0:
                    tdcs.num_vcpus -= 1
                    return Result("TDH.VP.INIT", st.TDX_OPERAND_INVALID | R8)
                if x2apicid in tdcs.x2apic_ids[:index]:
                    tdcs.x2apic_ids.append(0)  # the slot the module leaves behind, zeroed
                    return Result("TDH.VP.INIT", st.TDX_X2APIC_ID_NOT_UNIQUE | x2apicid)
                tdcs.x2apic_ids.append(x2apicid)
            else:
                tdcs.x2apic_ids.append(0)
            yield IN_SEAMCALL
            vp.vcpu_index = index
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
        """Module 1.5 `tdh_mem_sept_add.c` (version 0): the prologue with the tree shared,
        levels 2M..ept_pwl; the entry FREE or NL_MAPPED (`sept_state_lookup.c`), else
        EPT_ENTRY_STATE_INCORRECT | RCX with the entry in RCX / RDX; then `process_l1_page`:
        a NULL_PA page is OPERAND_INVALID | R8, an existing table (NL_MAPPED) the same state
        error (the ALLOW_EXISTING flag of RDX is not modelled), and the new page is locked
        exclusively and must be PT_NDA (R8)."""
        leaf = "TDH.MEM.SEPT.ADD"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(
                call, tdr, gpa, level, Leaf.TDH_MEM_SEPT_ADD, (1, 2, 3),
                tree_exclusive=False)
            if err:
                return Result(leaf, err, *call.details)
            if entry.state not in (SEPT_FREE, SeptState.NL_MAPPED):
                call.septe(entry, level)
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX, *call.details)
            if page == NULL_PA:
                return Result(leaf, st.TDX_OPERAND_INVALID | R8)
            if entry.state != SEPT_FREE:
                call.septe(entry, level)
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX, *call.details)
            err = self._new_page_error(call, page, R8)
            if err:
                return Result(leaf, err)
            yield IN_SEAMCALL
            self._give_page(page, PT_EPT, td)
            entry.state, entry.hpa = SeptState.NL_MAPPED, page
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.MEM.PAGE.ADD (build time, TDR exclusive) -----------------------------------------
    def _h_tdh_mem_page_add(self, tdr: int, gpa: int, page: int, source: int = 0, *,
                           lp: int):
        """Module 1.5 `tdh_mem_page_add.c`, in order: TDR (RDX) exclusively; TD state without
        the OP_STATE lock (row [2]: INITIALIZED only); RCX a 4K GPA | level 0, private and
        inside the GPA width (OPERAND_INVALID | RCX); the S-EPT walked without its lock (the
        TDR is exclusive) down to level 0 (EPT_WALK_FAILED | RCX); the entry FREE
        (EPT_ENTRY_STATE_INCORRECT | RCX) -- both with the entry's details in RCX / RDX
        (`set_arch_septe_details_in_vmm_regs`); the source (R9) 4K-aligned, below MAX_PA, with
        a shared KeyID (OPERAND_INVALID | R9); then the new page (R8, explicit 4K, PT_NDA)."""
        call = Call(f"TDH.MEM.PAGE.ADD@LP{lp}")
        leaf = "TDH.MEM.PAGE.ADD"
        try:
            td, err = self._lock_tdr(call, tdr, RDX, exclusive=True)
            if err:
                return Result(leaf, err)
            err = self._td_state_error(call, td, Leaf.TDH_MEM_PAGE_ADD, lock_op_state=False)
            if err:
                return Result(leaf, err)
            err = self._gpa_error(gpa, 0)
            if err:
                return Result(leaf, err)
            sept = td.tdcs.sept
            entry = sept.walk(gpa, 0)
            if entry is None:
                return _septe_result(leaf, st.TDX_EPT_WALK_FAILED | RCX, *sept.stop(gpa, 0))
            if entry.state != SEPT_FREE:
                return _septe_result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX,
                                     entry.state, entry.hpa, 0)
            if self._shared_hpa_error(source, PAGE_SIZE):
                return Result(leaf, st.TDX_OPERAND_INVALID | R9)
            err = self._new_page_error(call, page, R8)
            if err:
                return Result(leaf, err)
            yield IN_SEAMCALL
            self._give_page(page, PT_REG, td)
            entry.state, entry.hpa = SEPT_MAPPED, page
            return Result(leaf, OK)
        finally:
            call.release()

    # TDH.MR.EXTEND / TDH.MR.FINALIZE (TDR exclusive) --------------------------------------
    def _h_tdh_mr_extend(self, tdr: int, gpa: int, lp: int):
        """Module 1.5 `tdh_mr_extend.c`, in order: TDR (RDX) exclusively; TD state without the
        OP_STATE lock (row [16]: INITIALIZED only); RCX 256-byte aligned (OPERAND_INVALID |
        RCX); the GPA private and inside the GPA width (`check_gpa_validity`, OPERAND_INVALID
        | RCX); the S-EPT walked to whatever leaf maps the GPA (`check_and_walk_private_gpa_
        to_leaf`): no present leaf (a missing table, a FREE, PENDING or BLOCKED entry) turns
        the walk's EPT_WALK_FAILED into EPT_ENTRY_NOT_PRESENT | RCX, with the entry's details
        in RCX / RDX; a present leaf that is not MAPPED is EPT_ENTRY_NOT_PRESENT with *no*
        operand id. A 2 MB leaf is measured like a 4K one."""
        call = Call(f"TDH.MR.EXTEND@LP{lp}")
        leaf = "TDH.MR.EXTEND"
        try:
            td, err = self._lock_tdr(call, tdr, RDX, exclusive=True)
            if err:
                return Result(leaf, err)
            err = self._td_state_error(call, td, Leaf.TDH_MR_EXTEND, lock_op_state=False)
            if err:
                return Result(leaf, err)
            if gpa < 0 or gpa % 256 or self._gpa_error(gpa & ~0xFFF, 0):
                return Result(leaf, st.TDX_OPERAND_INVALID | RCX)
            sept = td.tdcs.sept
            entry = sept.walk_to_leaf(gpa)
            if entry is None:
                return _septe_result(leaf, st.TDX_EPT_ENTRY_NOT_PRESENT | RCX,
                                     *sept.stop(gpa, 0))
            if entry.state != SEPT_MAPPED:
                return Result(leaf, st.TDX_EPT_ENTRY_NOT_PRESENT)
            yield IN_SEAMCALL
            return Result(leaf, OK)
        finally:
            call.release()

    def _h_tdh_mr_finalize(self, tdr: int, lp: int):
        """Module 1.5 `tdh_mr_finalize.c`: TDR (RCX) exclusively; TD state without the OP_STATE
        lock (row [17]: INITIALIZED only, so a second FINALIZE is OP_STATE_INCORRECT); at least
        one vCPU initialised by TDH.VP.INIT (TDCS.NUM_VCPUS), else TDX_NO_VCPUS."""
        call = Call(f"TDH.MR.FINALIZE@LP{lp}")
        try:
            td, err = self._lock_tdr(call, tdr, RCX, exclusive=True)
            if err:
                return Result("TDH.MR.FINALIZE", err)
            err = self._td_state_error(call, td, Leaf.TDH_MR_FINALIZE, lock_op_state=False)
            if err:
                return Result("TDH.MR.FINALIZE", err)
            if td.tdcs.num_vcpus == 0:
                return Result("TDH.MR.FINALIZE", st.TDX_NO_VCPUS)
            yield IN_SEAMCALL
            td.tdcs.op_state = OP_RUNNABLE
            return Result("TDH.MR.FINALIZE", OK)
        finally:
            call.release()

    # TDH.MEM.PAGE.AUG (runtime, S-EPT tree shared) ----------------------------------------
    def _h_tdh_mem_page_aug(self, tdr: int, gpa: int, level: int, page: int, lp: int):
        """Module 1.5 `tdh_mem_page_aug.c`: the prologue with the tree shared, levels 4K and
        2M (`verify_page_info_input(LVL_PT, LVL_PD)`); the entry FREE or REMOVED, else
        EPT_ENTRY_STATE_INCORRECT | RCX with the entry in RCX / RDX; the page (R8) by
        `check_and_lock_free_range_hpa` at the entry's size (a 2 MB page: the whole range
        free). The entry becomes PENDING; child count + 1 (512 for 2 MB)."""
        leaf = "TDH.MEM.PAGE.AUG"
        call = Call(f"{leaf}@LP{lp}")
        try:
            td, entry, err = self._lock_sept_entry(call, tdr, gpa, level, Leaf.TDH_MEM_PAGE_AUG,
                                                   (0, 1), tree_exclusive=False)
            if err:
                return Result(leaf, err, *call.details)
            if entry.state not in AUG_ALLOWED:
                call.septe(entry, level)
                return Result(leaf, st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX, *call.details)
            if level == 1:  # a 2 MB page: PAMT_2M only, no PAMT_4K pair (dpamt)
                err = self._new_2m_page_error(call, page, R8)
            else:
                err = self._new_page_error(call, page, R8)
            if err:
                return Result(leaf, err)
            yield IN_SEAMCALL
            if level == 1:
                self._give_2m_page(page, td)
            else:
                self._give_page(page, PT_REG, td)
            entry.state, entry.hpa = SEPT_PENDING, page
            return Result(leaf, OK)
        finally:
            call.release()


def _septe_result(leaf: str, status, state, hpa: int, level: int) -> Result:
    """A walk or entry-state failure: the entry's details in RCX / RDX (`sept.py`)."""
    rcx, rdx = arch_septe_details(state, hpa, level)
    return Result(leaf, status, rcx=rcx, rdx=rdx)
