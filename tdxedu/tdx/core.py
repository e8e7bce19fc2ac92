"""SEAMCALL machinery shared by every leaf handler: operands, locks, results, tracing.

Every handler is a generator. It takes its try-locks, may `yield` a preemption point while it
holds them (so a scheduler can run another LP's SEAMCALL in the middle, as real LPs overlap),
and returns a `Result`. `TdxModule.tdh_*` methods run a handler to completion;
`TdxModule.stepwise(name, ...)` hands the generator to a scheduler.
"""

from __future__ import annotations

from ..trace import Preempt, Trace
from . import status as st
from .opstate import ALLOWED as OP_STATE_ALLOWED
from .pamt import KEYID_SHIFT, PAGE_SIZE, PT_NDA, PT_REG, PT_TDR, PT_TDVPR
from .sept import ANY_BLOCKED, GPAW, LEVEL_SIZES, SHARED_BIT, septe_details
from .status import Status
from .td import OP_RUNNABLE, TD_KEYS_CONFIGURED

IN_SEAMCALL = Preempt("in SEAMCALL, locks held")
MAX_PA = 52  # physical address width the model assumes; KeyIDs sit in bits 51:46


class Result:
    """A SEAMCALL's outputs: `.status` plus the registers the leaf returns."""

    __slots__ = ("leaf", "status", "rcx", "rdx", "r8", "exit_reason", "pamt_removal_hint")

    def __init__(self, leaf: str, status: Status, rcx=0, rdx=0, r8=0, exit_reason=None):
        self.leaf = leaf
        self.status = status
        self.rcx = rcx
        self.rdx = rdx
        self.r8 = r8
        self.exit_reason = exit_reason
        # Dynamic PAMT: bit 62 of RAX (PAMT_REMOVAL_HINT, module 2.0 `pamt_manager.h`) on a
        # successful removal that left its 2 MB range with no 4K page in use ([M20], [V2-CL]).
        # Kept apart from `status` so the completion code reads as the kernel's macro.
        self.pamt_removal_hint = False

    @property
    def ok(self) -> bool:
        return not self.status.is_error

    def __repr__(self) -> str:
        extra = f", exit={self.exit_reason}" if self.exit_reason else ""
        return f"<{self.leaf}: {self.status}{extra}>"


class Call:
    """The locks one in-flight SEAMCALL holds; all released when it returns. `details` is
    what the leaf leaves in RCX / RDX when it fails on an S-EPT entry (see `septe`)."""

    __slots__ = ("who", "held", "details")

    def __init__(self, who: str):
        self.who = who
        self.held: list = []
        self.details = (0, 0)

    def septe(self, entry, level: int) -> None:
        """`set_arch_septe_details_in_vmm_regs` (module 1.5 `sept_manager.c`): RCX = the
        architectural S-EPT entry, RDX = its level and public state."""
        self.details = septe_details(entry, level)

    def shared(self, lock, host: bool = True) -> bool:
        if lock.try_shared(self.who, host):
            self.held.append((lock, False))
            return True
        return False

    def exclusive(self, lock, host: bool = True) -> bool:
        if lock.try_exclusive(self.who, host):
            self.held.append((lock, True))
            return True
        return False

    def entry(self, elock) -> bool:
        """Host-side S-EPT entry lock."""
        if elock.try_host(self.who):
            self.held.append((elock, None))
            return True
        return False

    def promote(self, lock) -> bool:
        """`promote_sharex_lock_hp` (module 1.5 `src/common/helpers/tdx_locks.h`): a shared
        hold becomes exclusive only if this call is the single reader."""
        if lock.readers != [self.who]:
            return False
        lock.readers.clear()
        lock.writer = self.who
        i = self.held.index((lock, False))
        self.held[i] = (lock, True)
        return True

    def keep(self) -> list:
        """Hand the held locks to someone else (VP.ENTER keeps TDR/TDVPR over guest run)."""
        kept, self.held = self.held, []
        return kept

    def release(self) -> None:
        """Release in reverse order of acquisition. The locks' `release_*` methods are
        written out here (a dozen releases per removed page): drop this call's name from
        the readers, or clear the writer / the entry's holder."""
        who = self.who
        for lock, excl in reversed(self.held):
            if excl is False:
                lock.readers.remove(who)
            elif excl:
                assert lock.writer == who, (lock.name, lock.writer, who)
                lock.writer = None
            else:
                assert lock.holder == who, (lock.holder, who)
                lock.holder = None
        self.held = []


def need_int(leaf: str, name: str, value, what: str) -> int:
    """Python-level misuse (not an operand error) is a TypeError that says what was expected."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{leaf}: {name} must be an int ({what}), got {type(value).__name__}")
    return value


def _returning_into(out: list, gen):
    """`yield from gen`, appending its return value to `out`. A for loop over this hands
    `_run` the handler's Result without a StopIteration raised into Python code, which
    costs about as much as a handler's checks."""
    out.append((yield from gen))


class CoreMixin:
    """Operand checks and lookups used by all leaves; `TdxModule` supplies the state."""

    trace: Trace | None

    # --- operands -------------------------------------------------------------------------
    def _hpa_error(self, pa: int, operand: int) -> Status | None:
        """Checks every host-physical operand makes: 4K aligned, no KeyID bits, in a TDMR."""
        if pa < 0 or pa % PAGE_SIZE or pa >> KEYID_SHIFT:
            return st.TDX_OPERAND_INVALID | operand
        pamt = self.pamt
        if not pamt.base <= pa < pamt.end:  # pamt.covers(pa), written out: every call checks
            return st.TDX_OPERAND_ADDR_RANGE_ERROR | operand
        return None

    def _shared_hpa_error(self, pa: int, align: int) -> bool:
        """`shared_hpa_check_with_pwr_2_alignment` (module 1.5 `src/common/helpers/helpers.c`)
        for a host page the module only reads (TD_PARAMS, PAGE.ADD's source): aligned, below
        MAX_PA, and a shared KeyID (below the first TDX private KeyID). No TDMR needed; the
        SEAMRR overlap test is not modelled."""
        return (pa < 0 or pa % align or pa >> MAX_PA
                or pa >> KEYID_SHIFT >= min(self.global_keyid, self.private_hkids.start))

    def _pamt_walk(self, call: Call, pa: int, operand: int, exclusive: bool, new: bool = False):
        """`pamt_walk` for a 4K operand (module 1.5 `pamt_manager.c`, called by
        `non_shared_hpa_metadata_check_and_lock` in `helpers.c`): the PAMT_2M entry of the
        page's range shared (BUSY | operand); if that range is a 2 MB TD page the walk ends
        there, with the lock promoted for an exclusive request (BUSY), and the page is
        PAGE_METADATA_INCORRECT (leaf size != 4K); else the 4K entry shared or exclusive
        (BUSY). The PAMT_1G entry is taken shared first in the module; the model has no 1 GB TD
        page (AUG maps at most 2 MB, PROMOTE to 1 GB is not modelled), so nothing ever holds
        it exclusively and it is left out. Dynamic PAMT (module 2.0, `tdx.dpamt`): a page being
        handed to a TD in a range with no PAMT_4K pair gets the PAMT_2M entry exclusively and
        TDX_MISSING_PAMT_PAGE_PAIR. Returns (4K entry, None) or (None, Status)."""
        pamt = self.pamt
        r = pamt.ranges.get(pa >> 21) or pamt.range_entry(pa)
        rpt = r.pt
        if new and rpt == PT_NDA and self.dynamic_pamt:
            if not call.exclusive(r.lock):
                return None, st.TDX_OPERAND_BUSY | operand
            return None, st.TDX_MISSING_PAMT_PAGE_PAIR | operand
        if not call.shared(r.lock):
            return None, st.TDX_OPERAND_BUSY | operand
        if rpt == PT_REG:
            if exclusive and not call.promote(r.lock):
                r.lock.host_priority = True  # promote_sharex_lock_hp sets it when it fails
                return None, st.TDX_OPERAND_BUSY | operand
            return None, st.TDX_PAGE_METADATA_INCORRECT | operand
        e = pamt.entries.get(pa >> 12) or pamt.entry(pa >> 12)
        if not (call.exclusive(e.lock) if exclusive else call.shared(e.lock)):
            return None, st.TDX_OPERAND_BUSY | operand
        return e, None

    def _new_page_error(self, call: Call, pa: int, operand: int) -> Status | None:
        """A page about to be handed to a TD (`check_and_lock_explicit_4k_private_hpa` with
        PT_NDA): valid, PAMT walk locking it exclusively, then PT_NDA."""
        err = self._hpa_error(pa, operand)
        if err:
            return err
        e, err = self._pamt_walk(call, pa, operand, True, new=True)
        if err:
            return err
        if e.pt != PT_NDA:
            return st.TDX_PAGE_METADATA_INCORRECT | operand
        return self._pamt_4k_backing_error(call, pa, operand)

    def _pamt_4k_backing_error(self, call: Call, pa: int, operand: int) -> Status | None:
        """Dynamic PAMT hook (`tdx.dpamt.DpamtMixin`): static PAMT has no PAMT pages."""
        return None

    def _lock_explicit(self, call: Call, pa: int, operand: int, expected, exclusive: bool):
        """`check_and_lock_explicit_*_hpa` / `non_shared_hpa_metadata_check_and_lock` (module
        1.5 `src/common/helpers/helpers.c`): alignment and KeyID bits (OPERAND_INVALID), inside
        a TDMR (OPERAND_ADDR_RANGE_ERROR), PAMT walk taking the entry lock (OPERAND_BUSY), and
        only then the page type (PAGE_METADATA_INCORRECT) -- the lock comes before the type."""
        err = self._hpa_error(pa, operand)
        if err:
            return None, err
        e, err = self._pamt_walk(call, pa, operand, exclusive)
        if err:
            return None, err
        if e.pt != expected:
            return None, st.TDX_PAGE_METADATA_INCORRECT | operand
        return e, None

    def _lock_tdr(self, call: Call, tdr_pa: int, operand: int, exclusive: bool = False):
        """Find and lock the TDR named by an operand. Returns (Tdr, None) or (None, Status).
        `check_lock_and_map_explicit_tdr` (module helpers.c)."""
        e, err = self._lock_explicit(call, tdr_pa, operand, PT_TDR, exclusive)
        if err:
            return None, err
        return self.tds[tdr_pa], None

    def _lock_vcpu(self, call: Call, tdvpr_pa: int, operand: int, exclusive: bool = False,
                   tdr_exclusive: bool = False):
        """The TDVPR operand (`check_and_lock_explicit_4k_private_hpa`), then its TD's TDR
        shared as an implicit operand (`lock_and_map_implicit_tdr`, BUSY | TDR), as in module
        1.5 `tdh_vp_flush.c`, `tdh_vp_enter.c`, `tdh_vp_addcx.c`, `tdh_vp_init.c`."""
        e, err = self._lock_explicit(call, tdvpr_pa, operand, PT_TDVPR, exclusive)
        if err:
            return None, err
        vp = self.vcpus[tdvpr_pa]
        # The vCPU's TD is locked implicitly, shared ([M15] `tdh_vp_enter.c`).
        td_lock = self.pamt.entry(vp.td.pa >> 12).lock
        if not (call.exclusive(td_lock) if tdr_exclusive else call.shared(td_lock)):
            return None, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TDR
        return vp, None

    def _td_state_error(self, call: Call, td, leaf, lock_op_state: bool = True) -> Status | None:
        """`check_state_map_tdcs_and_lock` (module 1.5 `src/common/helpers/helpers.c`), in its
        order. `check_td_in_correct_build_state`: FATAL (TD_FATAL), lifecycle not
        TD_KEYS_CONFIGURED (TD_KEYS_NOT_CONFIGURED), fewer than MIN_NUM_TDCS_PAGES TDCS pages
        (TDCS_NOT_ALLOCATED); then the OP_STATE lock shared (BUSY | OP_STATE) unless the leaf
        passes TDX_LOCK_NO_LOCK (the leaves that hold the TDR exclusively: MNG.INIT,
        PAGE.ADD, MR.EXTEND, MR.FINALIZE); then the leaf's row of the module's op-state table
        (`tdx.opstate`, `op_state_lookup.c`) -> OP_STATE_INCORRECT. `leaf` is a `Leaf`."""
        if td.fatal:
            return st.TDX_TD_FATAL
        if td.lifecycle != TD_KEYS_CONFIGURED:
            return st.TDX_TD_KEYS_NOT_CONFIGURED
        tdcs = td.tdcs
        if tdcs is None:
            return st.TDX_TDCS_NOT_ALLOCATED
        if lock_op_state and not call.shared(tdcs.op_state_lock):
            return st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_OP_STATE
        if tdcs.op_state not in OP_STATE_ALLOWED[leaf]:
            return st.TDX_OP_STATE_INCORRECT
        return None

    def _lock_sept_entry(self, call: Call, tdr: int, gpa: int, level: int, leaf,
                         levels, tree_exclusive: bool):
        """The prologue the memory-management handlers share (module 1.5
        `tdh_mem_range_block.c`, `tdh_mem_page_remove.c`, `tdh_mem_page_aug.c`, ...): lock the
        TDR (RDX) shared, check the TD state, check GPA | level (RCX, `verify_page_info_input`
        then `check_gpa_validity`), take the S-EPT tree lock shared or exclusive (BUSY | SEPT),
        walk to the entry (EPT_WALK_FAILED | RCX) and take its host lock (BUSY | RCX).
        Returns (td, entry, None) or (None, None, Status) with the status of the first check
        that failed; after a failed walk or a busy entry `call.details` holds the RCX / RDX the
        module reports (the entry where the walk stopped, or the busy entry).
        The walk is `secure_ept_walk` (`src/common/memory_handlers/sept_manager.c`, via
        `lock_sept_check_and_walk_private_gpa` in `src/common/helpers/helpers.c`): it stops
        at any entry above the requested level that is a leaf or has RWX = 0 -- FREE, and
        NL_BLOCKED too -- so that level is not reached (`SecureEpt.walk`)."""
        td, err = self._lock_tdr(call, tdr, st.TDX_OPERAND_ID_RDX)
        if err:
            return None, None, err
        err = self._td_state_error(call, td, leaf)
        if err:
            return None, None, err
        return self._lock_gpa_entry(call, td, gpa, level, levels, tree_exclusive)

    def _lock_gpa_entry(self, call: Call, td, gpa: int, level: int, levels,
                        tree_exclusive: bool):
        """The second half of `_lock_sept_entry`, from the GPA | level check on."""
        err = self._gpa_error(gpa, level, leaf_levels=levels)
        if err:
            return None, None, err
        tdcs = td.tdcs
        tree = tdcs.sept_lock
        if not (call.exclusive(tree) if tree_exclusive else call.shared(tree)):
            return None, None, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT
        entry = tdcs.sept.walk(gpa, level)
        if entry is None:
            call.septe(*tdcs.sept.walk_stop(gpa, level))
            return None, None, st.TDX_EPT_WALK_FAILED | st.TDX_OPERAND_ID_RCX
        if not call.entry(entry.lock):
            call.septe(entry, level)
            return None, None, st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_RCX
        return td, entry, None

    @staticmethod
    def _tracking_error(call: Call, tdcs, entry, bepoch: int) -> Status | None:
        """In a running TD (`op_state_is_tlb_tracking_required`) a removal needs the entry
        blocked (GPA_RANGE_NOT_BLOCKED | RCX, with the entry in RCX / RDX) and its block
        epoch tracked (`is_tlb_tracked`: TLB_TRACKING_NOT_DONE | RCX, registers left 0), as
        in module 1.5 `tdh_mem_page_remove.c`; before TDH.MR.FINALIZE neither."""
        if tdcs.op_state != OP_RUNNABLE:
            return None
        if entry.state not in ANY_BLOCKED:
            call.septe(entry, entry.level)
            return st.TDX_GPA_RANGE_NOT_BLOCKED | st.TDX_OPERAND_ID_RCX
        if not tdcs.is_tlb_tracked(bepoch):
            return st.TDX_TLB_TRACKING_NOT_DONE | st.TDX_OPERAND_ID_RCX
        return None

    def _gpa_error(self, gpa: int, level: int, leaf_levels=(0,)) -> Status | None:
        """RCX = GPA | level: the level must be allowed for the leaf, the GPA aligned to it,
        inside the GPA width and private (shared bit clear)."""
        if level not in leaf_levels or gpa < 0 or gpa >> GPAW or gpa & SHARED_BIT:
            return st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RCX
        if gpa % LEVEL_SIZES[level]:  # `level` is one of leaf_levels (0..3) here
            return st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RCX
        return None

    # --- running handlers -----------------------------------------------------------------
    # Faults armed by `tdxedu.tdx.fault_inject` (None: no fault armed, the usual case).
    fault_injector: list | None = None

    def _fault(self, leaf: str, lp: int, args: tuple):
        from .fault_inject import fault_for  # only once a fault is armed

        return fault_for(self.fault_injector, leaf, lp, args)

    def _run(self, leaf: str, lp: int, args: tuple, gen) -> Result:
        """Run a handler to its end, passing over its preemption points."""
        fault = None if self.fault_injector is None else self._fault(leaf, lp, args)
        if fault is not None and not fault.run:
            gen.close()
            res = fault.result(leaf)
        else:
            out: list = []
            for _ in _returning_into(out, gen):
                pass
            res = out[0]
            if fault is not None:
                res.status = fault.status
        self._emit(leaf, lp, args, res)
        return res

    def _steps(self, leaf: str, lp: int, args: tuple, gen):
        fault = None if self.fault_injector is None else self._fault(leaf, lp, args)
        if fault is not None and not fault.run:
            gen.close()
            res = fault.result(leaf)
        else:
            res = yield from gen
            if fault is not None:
                res.status = fault.status
        self._emit(leaf, lp, args, res)
        return res

    def _emit(self, leaf: str, lp: int, args: tuple, res: Result) -> None:
        """Count the call; trace it when the trace is on."""
        self.counts[leaf] = self.counts.get(leaf, 0) + 1
        if self.trace is not None and self.trace.enabled:
            status = str(res.status) + (f" ({res.exit_reason})" if res.exit_reason else "")
            self.trace.emit(leaf, *args, status=status, cpu=lp, source="tdx-module")
