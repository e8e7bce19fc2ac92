"""SEAMCALLs in an order you choose, one per Step, on a fresh module (lesson 01):
`SeamcallScriptSource`."""

from __future__ import annotations

from ..tdx import TdxModule
from ..tdx.pamt import PageType
from ..tdx.status import status_outcome
from ..tdx.testing import TdBuilder
from ..trace import MODULE_SOURCE, Event, Trace
from .step import Finished, Frame, StepInfo, td_states

# --- SEAMCALLs in an order you choose (lesson 01) -------------------------------------------
KVM_BUILD_ORDER = ("tdh_mng_create", "tdh_mng_key_config", "tdh_mng_addcx", "tdh_mng_init",
                   "tdh_vp_create", "tdh_vp_addcx", "tdh_vp_init", "tdh_mem_sept_add",
                   "tdh_mem_page_add", "tdh_mr_extend", "tdh_mr_finalize", "tdh_vp_enter")
TEARDOWN_ORDER = ("td_exit", "tdh_vp_flush", "tdh_mng_vpflushdone", "tdh_phymem_cache_wb",
                  "tdh_mng_key_freeid", "tdh_phymem_page_reclaim")
SCRIPT_CALLS = KVM_BUILD_ORDER + TEARDOWN_ORDER
SRC_WRAPPERS = "arch/x86/virt/vmx/tdx/tdx.c"


def _parse_ops(ops, allowed, what: str) -> list[str]:
    if isinstance(ops, str):
        ops = [s.strip() for s in ops.replace(",", " ").split() if s.strip()]
    ops = list(ops)
    if not ops:
        raise ValueError(f"give at least one {what}")
    bad = [o for o in ops if o not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {bad[0]!r}; choose from: {', '.join(allowed)}")
    return ops


class SeamcallScriptSource:
    """One TD, SEAMCALLs issued in the order you give, one per step, on a fresh module.

    Operands are filled in the way KVM would (pages from a bump allocator, GPA 0, vCPU on
    LP 0); `tdh_mng_addcx` / `tdh_vp_addcx` add every TDCS / TDCX page the module needs and
    `tdh_mem_sept_add` every missing table above GPA 0 (KVM's loops), `tdh_mr_extend` one
    256-byte chunk. `tdh_phymem_page_reclaim` reclaims the next page in reverse order of
    allocation (guest page, tables, TDCX, TDVPR, TDCS, and the TDR last)."""

    STEP_IS = ("one wrapper name from your list. Most issue one SEAMCALL; `tdh_mng_addcx`, "
               "`tdh_vp_addcx` and `tdh_mem_sept_add` issue as many as KVM's loop would (every "
               "TDCS page, every TDCX page, every missing S-EPT table), so a Step can add "
               "several rows to the timeline; the status line counts them (\"this Step: 6 "
               "SEAMCALLs\").")

    def __init__(self, calls=KVM_BUILD_ORDER):
        self.calls = _parse_ops(calls, SCRIPT_CALLS, "SEAMCALL")
        self.title = "SEAMCALLs in your order: " + ", ".join(self.calls)
        self.panels = ("timeline", "lifecycle", "pamt")
        self.reset()

    def reset(self) -> None:
        self.trace = Trace()
        self.trace.actor = "kvm"
        self.module = TdxModule(memory=4 << 20, lps_per_package=2, trace=self.trace)
        self.b = TdBuilder(self.module)
        self.tdr: int | None = None
        self.hkid = 33
        self.vp: int | None = None
        self.tdcs: list[int] = []
        self.tdcx: list[int] = []
        self.tables: dict[int, int] = {}
        self.page: int | None = None
        self.kvm = None
        self.n = 0
        self.done = False
        self.step_of: dict[int, int] = {}  # event seq -> the Step that issued it

    def _reclaim_next(self):
        order = ([self.page] if self.page else []) + [self.tables[k] for k in sorted(
            self.tables)] + self.tdcx + ([self.vp] if self.vp else []) + self.tdcs + (
            [self.tdr] if self.tdr else [])
        for pa in order:
            if self.module.pamt.page_type(pa) != PageType.PT_NDA:
                return pa
        return self.tdr or self.b.page()

    def _issue(self, name: str) -> None:
        m, b = self.module, self.b
        tdr = self.tdr if self.tdr is not None else b.page()
        if name == "tdh_mng_create":
            self.tdr = tdr
            m.tdh_mng_create(tdr, self.hkid)
        elif name == "tdh_mng_key_config":
            m.tdh_mng_key_config(tdr)
        elif name == "tdh_mng_addcx":
            for _ in range(m.tdcs_pages - len(self.tdcs)):
                pa = b.page()
                if m.tdh_mng_addcx(tdr, pa).ok:
                    self.tdcs.append(pa)
                else:
                    break
        elif name == "tdh_mng_init":
            m.tdh_mng_init(tdr, 0)
        elif name == "tdh_vp_create":
            vp = self.vp or b.page()
            if m.tdh_vp_create(tdr, vp).ok:
                self.vp = vp
        elif name == "tdh_vp_addcx":
            for _ in range(m.tdcx_per_vcpu - len(self.tdcx)):
                pa = b.page()
                if m.tdh_vp_addcx(self.vp or b.page(), pa).ok:
                    self.tdcx.append(pa)
                else:
                    break
        elif name == "tdh_vp_init":
            m.tdh_vp_init(self.vp or b.page(), 0, 0, lp=0)
        elif name == "tdh_mem_sept_add":
            for level in (3, 2, 1):
                if level in self.tables:
                    continue
                pa = b.page()
                if not m.tdh_mem_sept_add(tdr, 0, level, pa).ok:
                    break
                self.tables[level] = pa
        elif name == "tdh_mem_page_add":
            pa = self.page or b.page()
            if m.tdh_mem_page_add(tdr, 0, pa, 0).ok:
                self.page = pa
        elif name == "tdh_mr_extend":
            m.tdh_mr_extend(tdr, 0)
        elif name == "tdh_mr_finalize":
            m.tdh_mr_finalize(tdr)
        elif name == "tdh_vp_enter":
            m.tdh_vp_enter(self.vp or b.page(), lp=0)
        elif name == "td_exit":
            m.td_exit(self.vp or b.page(), "HLT", lp=0)
        elif name == "tdh_vp_flush":
            m.tdh_vp_flush(self.vp or b.page(), lp=0)
        elif name == "tdh_mng_vpflushdone":
            m.tdh_mng_vpflushdone(tdr)
        elif name == "tdh_phymem_cache_wb":
            m.tdh_phymem_cache_wb(0)
        elif name == "tdh_mng_key_freeid":
            m.tdh_mng_key_freeid(tdr)
        elif name == "tdh_phymem_page_reclaim":
            m.tdh_phymem_page_reclaim(self._reclaim_next())

    def step(self) -> StepInfo:
        if self.done:
            raise Finished("every call in your list has been issued: press Reset")
        name = self.calls[self.n]
        first = len(self.trace)
        self._issue(name)
        self.n += 1
        self.done = self.n >= len(self.calls)
        for e in self.trace.events[first:]:
            self.step_of[e.seq] = self.n
        return StepInfo(self.n, self.trace.events[first:],
                        [Frame(name, SRC_WRAPPERS, "the kernel's SEAMCALL wrapper")])

    def errors(self) -> list[Event]:
        return [e for e in self.trace if e.source == MODULE_SOURCE and e.status
                and _is_error(e.status)]

    def summary(self) -> str:
        lc, op, gone = td_states(self.module, self.tdr)
        state = "TDR reclaimed" if gone else "no TD" if lc is None else lc.name
        calls = [e for e in self.trace if e.source == MODULE_SOURCE]
        lines = [f"{self.n}/{len(self.calls)} Steps issued {len(calls)} SEAMCALL"
                 f"{'s' * (len(calls) != 1)} (one row each); TD {state}"
                 + (f", OP_STATE {op.name}" if op is not None else "")]
        for e in calls:
            lines.append(f"  step {self.step_of.get(e.seq, 0):>2}  {e.op:<24} {e.status}")
        return "\n".join(lines)


def _is_error(status: str) -> bool:
    return status_outcome(status) in ("busy", "error")


__all__ = ["SeamcallScriptSource", "KVM_BUILD_ORDER", "TEARDOWN_ORDER", "SCRIPT_CALLS"]
