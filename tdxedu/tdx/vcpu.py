"""Running a vCPU: TDH.VP.ENTER and its TD exit, TDH.VP.FLUSH.

VP.ENTER holds the TDR and the TDVPR shared for the whole time the vCPU is in the guest and
releases them at TD exit; it holds the TD epoch lock only to bump REFCOUNT[epoch & 1]; with
0-step mitigation active it holds the S-EPT tree exclusively during the entry path only
([M15]: module 1.5.01 `tdh_vp_enter.c`, `td_exit.c`,
`td_exit_stepping.c`). So entry and exit are two observable steps here.
VP.FLUSH must run on the LP the vCPU is associated with ([M15] `tdh_vp_flush.c`).
"""

from __future__ import annotations

from ..trace import Preempt
from . import status as st
from .core import Call, Result
from .sept import GUEST_ACCESSIBLE
from .td import EPF_GPA_LIST_SIZE, NO_LP, STEPPING_EPF_THRESHOLD, Lifecycle, OpState, VcpuState

RCX = st.TDX_OPERAND_ID_RCX
OK = st.TDX_SUCCESS
IN_ZERO_STEP_CHECK = Preempt("VP.ENTER 0-step check, S-EPT tree held exclusively")


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
            if td.lifecycle != Lifecycle.TD_KEYS_CONFIGURED:
                return Result(leaf, st.TDX_TD_KEYS_NOT_CONFIGURED)
            if td.fatal:
                return Result(leaf, st.TDX_TD_FATAL)
            tdcs = td.tdcs
            if not call.shared(tdcs.op_state_lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_OP_STATE)
            if tdcs.op_state != OpState.RUNNABLE:
                return Result(leaf, st.TDX_OP_STATE_INCORRECT)
            if vp.state != VcpuState.VCPU_READY:
                return Result(leaf, st.TDX_VCPU_STATE_INCORRECT)
            if vp.assoc_lpid not in (NO_LP, lp):
                return Result(leaf, st.TDX_VCPU_ASSOCIATED)
            # Epoch lock shared, just long enough to count this vCPU in the current epoch.
            if not call.shared(tdcs.epoch_lock):
                return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TD_EPOCH)
            epoch = tdcs.td_epoch
            if vp.epf_gpas:
                # 0-step mitigation: the tree exclusively while the listed GPAs are checked.
                if not call.exclusive(tdcs.sept_lock):
                    return Result(leaf, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT)
                yield IN_ZERO_STEP_CHECK
                for gpa in vp.epf_gpas:
                    leaf_entry = tdcs.sept.translate(gpa)
                    if leaf_entry is None or leaf_entry.state not in GUEST_ACCESSIBLE:
                        # Would fault again: synthesise an EPT-violation exit, do not enter.
                        self._associate(vp, lp)
                        return Result(leaf, OK, rcx=gpa, exit_reason="EPT_VIOLATION")
                vp.epf_gpas.clear()
                vp.epf_count = 0
            # Enter the guest: keep TDR + TDVPR shared until TD exit; drop the rest.
            self._associate(vp, lp)
            tdcs.refcount[epoch & 1] += 1
            vp.vcpu_epoch = epoch
            vp.state = VcpuState.VCPU_ACTIVE
            keep = [(lk, ex) for lk, ex in call.held if lk is not tdcs.epoch_lock
                    and lk is not tdcs.sept_lock and lk is not tdcs.op_state_lock]
            for item in keep:
                call.held.remove(item)
            vp.enter_locks = [(lk, ex, call.who) for lk, ex in keep]
            return Result(leaf, OK, exit_reason=None)
        finally:
            call.release()

    def _h_td_exit(self, tdvpr: int, reason: str = "HLT", gpa: int = 0, progressed: bool = True,
                   *, lp: int):
        """The TD exit that ends a VP.ENTER: the value VP.ENTER finally returns to KVM."""
        leaf = "TD_EXIT"
        vp = self.vcpus.get(tdvpr)
        if vp is None or vp.state != VcpuState.VCPU_ACTIVE or vp.assoc_lpid != lp:
            return Result(leaf, st.TDX_VCPU_STATE_INCORRECT)
        yield from ()
        self._leave_guest(vp)
        if reason == "EPT_VIOLATION" and not progressed:
            vp.epf_count += 1
            if vp.epf_count >= STEPPING_EPF_THRESHOLD and len(vp.epf_gpas) < EPF_GPA_LIST_SIZE:
                if gpa not in vp.epf_gpas:
                    vp.epf_gpas.append(gpa)
        elif progressed:
            vp.epf_count = 0
            vp.epf_gpas.clear()
        return Result(leaf, OK, rcx=gpa, exit_reason=reason)

    def _leave_guest(self, vp) -> None:
        tdcs = vp.td.tdcs
        tdcs.refcount[vp.vcpu_epoch & 1] -= 1
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
            if len(vp.tdcx_pa) != self.tdcx_per_vcpu:
                return Result(leaf, st.TDX_TDCX_NUM_INCORRECT)
            if vp.assoc_lpid != lp:
                return Result(leaf, st.TDX_VCPU_NOT_ASSOCIATED)
            yield from ()
            vp.assoc_lpid = NO_LP
            vp.td.tdcs.num_assoc_vcpus -= 1
            return Result(leaf, OK)
        finally:
            call.release()
