"""Running a vCPU: TDH.VP.ENTER and its TD exit, TDH.VP.FLUSH.

TDH.VP.ENTER in the order of module 1.5 `src/td_transitions/tdh_vp_enter.c`:
1. the TDVPR (RCX) shared, then its TD's TDR shared as an implicit operand (BUSY | TDR);
2. `check_state_map_tdcs_and_lock`: fatal, keys configured, TDCS, OP_STATE lock shared, op-state;
3. `map_tdvps` (every TDCX page added, else TDX_TDCX_NUM_INCORRECT);
4. `check_and_associate_vcpu`: VCPU_READY, then associate with this LP (VCPU_ASSOCIATED if it is
   associated elsewhere). The association stays even if a later step fails;
5. `adjust_tlb_tracking_state` (`helpers.c`): the TD epoch lock shared *only* around sampling
   TD_EPOCH and incrementing REFCOUNT[epoch & 1], released at once (BUSY | TD_EPOCH);
6. the 0-step filter (`td_exit_stepping.c` td_entry_stepping_filter), only when the vCPU's
   list of faulting GPAs is not empty: the S-EPT tree exclusively (BUSY | SEPT, after undoing the
   REFCOUNT increment), then each listed GPA must translate with RWX; if one does not, the tree
   is released, the increment undone and an EPT-violation TD exit is emulated: the guest is
   never entered (RAX = exit reason 48, RCX = exit qualification, R8 = the GPA). The list is
   *not* cleared by a successful check: only a TD exit after guest progress clears it;
7. OP_STATE released, then the tree (if the filter took it; one step here); VCPU_ACTIVE, and
   the guest runs holding the TDR and the TDVPR (with its PAMT walk: the PAMT_2M entry above
   it) shared until the TD exit (`td_exit.c` td_vmexit_to_vmm, `pamt_unwalk`).
So during the 0-step check the vCPU holds the tree exclusively but *not* the epoch lock, and it
is already counted in the current epoch.
VP.FLUSH must run on the LP the vCPU is associated with (`tdh_vp_flush.c`).
"""

from __future__ import annotations

from ..trace import Preempt
from . import status as st
from .core import Call, Result
from .leaves import Leaf
from .sept import GUEST_FULLY_ACCESSIBLE, SHARED_BIT
from .td import (
    EPF_GPA_LIST_SIZE,
    MIN_TDCX_PER_VCPU,
    NO_LP,
    STEPPING_EPF_THRESHOLD,
    Lifecycle,
    VcpuState,
)

RCX = st.TDX_OPERAND_ID_RCX
OK = st.TDX_SUCCESS
IN_ZERO_STEP_CHECK = Preempt("VP.ENTER 0-step check, S-EPT tree held exclusively")
# Exit qualification of the EPT violation VP.ENTER emulates: a write access (bit 1), as
# `emulate_ept_violation_td_exit` in module 1.5 `tdh_vp_enter.c` sets it.
EPT_QUAL_DATA_WRITE = 1 << 1


class VcpuMixin:
    # TDH.VP.ENTER -------------------------------------------------------------------------
    def _h_tdh_vp_enter(self, tdvpr: int, lp: int):
        leaf = "TDH.VP.ENTER"
        call = Call(f"{leaf}@LP{lp}")
        try:
            vp, err = self._lock_vcpu(call, tdvpr, RCX)
            if err:
                return Result(leaf, err)
            td = vp.td
            err = self._td_state_error(call, td, Leaf.TDH_VP_ENTER)
            if err:
                return Result(leaf, err)
            if len(vp.tdcx_pa) < MIN_TDCX_PER_VCPU:  # map_tdvps
                return Result(leaf, st.TDX_TDCX_NUM_INCORRECT)
            if vp.state != VcpuState.VCPU_READY:
                return Result(leaf, st.TDX_VCPU_STATE_INCORRECT)
            if vp.assoc_lpid not in (NO_LP, lp):
                return Result(leaf, st.TDX_VCPU_ASSOCIATED)
            self._associate(vp, lp)
            tdcs = td.tdcs
            # adjust_tlb_tracking_state: the epoch lock only around the increment.
            if not tdcs.epoch_lock.try_shared(call.who):
                return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TD_EPOCH)
            vp.vcpu_epoch = tdcs.td_epoch
            tdcs.refcount[vp.vcpu_epoch & 1] += 1
            vp.counted = True
            tdcs.epoch_lock.release_shared(call.who)
            if vp.epf_gpas:
                if not call.exclusive(tdcs.sept_lock):
                    self._uncount(vp)
                    return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT)
                yield IN_ZERO_STEP_CHECK
                for gpa in vp.epf_gpas:
                    leaf_entry = tdcs.sept.translate(gpa)
                    if leaf_entry is None or leaf_entry.state not in GUEST_FULLY_ACCESSIBLE:
                        # Would fault again: emulate the EPT-violation exit, do not enter.
                        self._uncount(vp)
                        return Result(leaf, OK, rcx=EPT_QUAL_DATA_WRITE, r8=gpa,
                                      exit_reason="EPT_VIOLATION")
            # Enter the guest: keep TDR + TDVPR shared until the TD exit, drop the rest.
            vp.state = VcpuState.VCPU_ACTIVE
            keep = [(lk, ex) for lk, ex in call.held
                    if lk is not tdcs.sept_lock and lk is not tdcs.op_state_lock]
            for item in keep:
                call.held.remove(item)
            vp.enter_locks = [(lk, ex, call.who) for lk, ex in keep]
            return Result(leaf, OK, exit_reason=None)
        finally:
            call.release()

    @staticmethod
    def _uncount(vp) -> None:
        """`revert_tlb_tracking_state` (module `helpers.h`): VP.ENTER gives up after counting."""
        vp.td.tdcs.refcount[vp.vcpu_epoch & 1] -= 1
        vp.counted = False

    def _h_td_exit(self, tdvpr: int, reason: str = "HLT", gpa: int = 0, progressed: bool = True,
                   *, lp: int):
        """The TD exit that ends a VP.ENTER: the value VP.ENTER finally returns to KVM
        (`td_exit.c`: RCX = exit qualification, R8 = GPA). `progressed` says whether the guest
        RIP moved since this TD entry. 0-step bookkeeping as `td_exit_stepping.c`: progress
        resets the count and the GPA list (`vmexit_stepping_filter`, every exit); then an
        EPT violation on a private GPA counts up to STEPPING_EPF_THRESHOLD, and every one
        beyond records its GPA (`td_exit_epf_stepping_log`, called from `td_ept_violation.c`)."""
        leaf = "TD_EXIT"
        vp = self.vcpus.get(tdvpr)
        if vp is None or vp.state != VcpuState.VCPU_ACTIVE or vp.assoc_lpid != lp:
            return Result(leaf, st.TDX_VCPU_STATE_INCORRECT)
        yield from ()
        self._leave_guest(vp)
        if progressed:
            vp.epf_count = 0
            vp.epf_gpas.clear()
        if reason == "EPT_VIOLATION" and not gpa & SHARED_BIT:
            if vp.epf_count < STEPPING_EPF_THRESHOLD:
                vp.epf_count += 1
            elif len(vp.epf_gpas) < EPF_GPA_LIST_SIZE and gpa not in vp.epf_gpas:
                vp.epf_gpas.append(gpa)
        return Result(leaf, OK, r8=gpa, exit_reason=reason)

    def _leave_guest(self, vp) -> None:
        self._uncount(vp)
        for lock, excl, who in reversed(vp.enter_locks):
            (lock.release_exclusive if excl else lock.release_shared)(who)
        vp.enter_locks = []
        vp.state = VcpuState.VCPU_READY

    # TDH.VP.FLUSH -------------------------------------------------------------------------
    def _h_tdh_vp_flush(self, tdvpr: int, lp: int):
        leaf = "TDH.VP.FLUSH"
        call = Call(f"{leaf}@LP{lp}")
        try:
            vp, err = self._lock_vcpu(call, tdvpr, RCX, exclusive=True)
            if err:
                return Result(leaf, err)
            if vp.td.lifecycle != Lifecycle.TD_KEYS_CONFIGURED:
                return Result(leaf, st.TDX_TD_KEYS_NOT_CONFIGURED)
            # Module 1.5 `tdh_vp_flush.c`: mapping the TDVPS fails while not every TDCX page
            # has been added (`map_tdvps` -> TDX_TDCX_NUM_INCORRECT), before the LP check.
            if len(vp.tdcx_pa) < MIN_TDCX_PER_VCPU:
                return Result(leaf, st.TDX_TDCX_NUM_INCORRECT)
            if vp.assoc_lpid != lp:
                return Result(leaf, st.TDX_VCPU_NOT_ASSOCIATED)
            yield from ()
            vp.assoc_lpid = NO_LP
            vp.td.tdcs.num_assoc_vcpus -= 1
            return Result(leaf, OK)
        finally:
            call.release()
