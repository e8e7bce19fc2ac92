"""What one Step did: its events, the kernel call chain that issued its SEAMCALL (read from
the suspended generators, `gi_yieldfrom`), and what it touched, so the widget can say
"tdh_mem_range_block, issued by kvm_gmem_release -> tdx_sept_remove_private_spte" with the
source file and the docstring of the innermost kernel function ("why?").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tdx.pamt import PA_MASK
from ..tdx.td import Lifecycle, OpState
from ..trace import MODULE_SOURCE, Event, _show, event_kind

# Plumbing, not kernel functions, is left out of the call chain: these names and any name
# starting with an underscore (the model's private helpers).
_PLUMBING = frozenset({"seamcall", "sc", "stepwise"})


class Finished(Exception):
    """Step past the end: the widget turns this into a message."""


# --- what a step did ----------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """One kernel function in a call chain, with its source file and first docstring line."""

    name: str
    source: str
    why: str


@dataclass
class StepInfo:
    n: int
    events: list[Event]
    chain: list[Frame] = field(default_factory=list)
    actor: str | None = None
    note: str = ""

    @property
    def main(self) -> Event | None:
        """The step's SEAMCALL; when it issued none, its first event that is not a lock
        operation (taking a lock is rarely what the step is about), else its first event."""
        for e in self.events:
            if e.source == MODULE_SOURCE:
                return e
        for e in self.events:
            if event_kind(e) != "lock":
                return e
        return self.events[0] if self.events else None

    @property
    def kernel_function(self) -> str:
        return self.chain[-1].name if self.chain else ""

    def tally(self) -> str:
        """What the step recorded, counted so the parts add up to `len(events)`:
        "16 events: 1 SEAMCALL, 15 guest TDCALLs", "6 SEAMCALLs", "3 events" (for a step of
        one event: "")."""
        n = len(self.events)
        if n <= 1:
            return ""
        kinds = {"SEAMCALL": 0, "guest TDCALL": 0, "other event": 0}
        for e in self.events:
            kinds[_call_kind(e)] += 1
        parts = [f"{k} {name}{'s' * (k > 1)}" for name, k in kinds.items() if k]
        if len(parts) == 1:  # one kind: "6 SEAMCALLs", "6 events"
            return f"{n} SEAMCALLs" if kinds["SEAMCALL"] else (
                f"{n} guest TDCALLs" if kinds["guest TDCALL"] else f"{n} events")
        return f"{n} events: {', '.join(parts)}"

    def describe(self) -> str:
        """The step in words (plain text, one line): its main event, and when the step
        recorded more than that one event, how many of each kind (the status lists them)."""
        e = self.main
        if e is None:
            who = f"[{self.actor}] " if self.actor else ""
            return f"{who}{self.note or 'no event: the actor ran to its next preemption point'}"
        who = f"[{e.actor}] " if self.actor and e.actor else ""
        where = f" on cpu{e.cpu}" if e.cpu is not None else ""
        st = f" -> {e.status}" if e.status else ""
        text = f"{who}{e.op}({', '.join(_show(a) for a in e.args)}){where}{st}"
        if e.source == MODULE_SOURCE and e.op in LEAF_WORDS:
            text += f": {LEAF_WORDS[e.op]}"
        tally = self.tally()
        if tally:
            text += f" (this Step: {tally})"
        return text


def _call_kind(e: Event) -> str:
    """SEAMCALL (a host tdh_* leaf), guest TDCALL (tdg_*), or another event (a TD exit, a
    lock, an IPI, a KVM function)."""
    if e.source == MODULE_SOURCE and e.op.startswith("tdh_"):
        return "SEAMCALL"
    if e.source == MODULE_SOURCE and e.op.startswith("tdg_"):
        return "guest TDCALL"
    return "other event"


LEAF_WORDS = {
    "tdh_mng_create": "create the TD: its TDR page and its private key id (HKID)",
    "tdh_mng_key_config": "program the TD's key on this CPU package",
    "tdh_mng_addcx": "give the module a TDCS page",
    "tdh_mng_init": "initialise the TD (OP_STATE -> INITIALIZED)",
    "tdh_vp_create": "create a vCPU (its TDVPR page)",
    "tdh_vp_addcx": "give the vCPU a TDCX page",
    "tdh_vp_init": "initialise the vCPU and associate it with this CPU",
    "tdh_mem_sept_add": "add a Secure-EPT table page",
    "tdh_mem_page_add": "add an initial (measured) private page",
    "tdh_mr_extend": "measure 256 bytes of the page into MRTD",
    "tdh_mr_finalize": "seal the measurement: OP_STATE -> RUNNABLE",
    "tdh_mem_page_aug": "map a private page at runtime (PENDING until the guest accepts)",
    "tdg_mem_page_accept": "the guest accepts a PENDING page (TDCALL)",
    "tdh_vp_enter": "enter the guest",
    "td_exit": "the guest exits to the host",
    "tdh_mem_range_block": "block the S-EPT entry: no new TLB entries for the page",
    "tdh_mem_track": "start a new TD epoch (TLB tracking)",
    "tdh_mem_page_remove": "remove the page from the S-EPT and give it back",
    "tdh_mem_range_unblock": "unblock the S-EPT entry",
    "tdh_phymem_page_wbinvd": "write back and invalidate the page's cache lines (HKID)",
    "tdh_vp_flush": "flush the vCPU's state off this CPU (dissociate)",
    "tdh_mng_vpflushdone": "check every vCPU is flushed: TD_BLOCKED",
    "tdh_phymem_cache_wb": "write back caches for the TD's key on this package",
    "tdh_mng_key_freeid": "free the HKID: TD_TEARDOWN",
    "tdh_phymem_page_reclaim": "reclaim a TD page (PAMT -> PT_NDA)",
}


def _frame_of(gen) -> Frame | None:
    code = gen.gi_code
    frame = gen.gi_frame
    if frame is None:
        return None
    func = frame.f_globals.get(code.co_name)
    owner = frame.f_locals.get("self")
    if func is None and owner is not None:
        func = getattr(type(owner), code.co_name, None)
    doc = (getattr(func, "__doc__", None) or "").strip()
    why = " ".join(doc.split("\n\n", 1)[0].split())
    src = (frame.f_globals.get("SRC") or frame.f_globals.get("SRC_TDP")
           or frame.f_globals.get("__name__", ""))
    return Frame(code.co_name, src, why)


def call_chain(gen) -> list[Frame]:
    """Kernel functions (outermost first) in which a suspended generator stack waits."""
    out: list[Frame] = []
    while gen is not None and hasattr(gen, "gi_code"):
        name = gen.gi_code.co_name
        if name not in _PLUMBING and not name.startswith("_") and name != "<genexpr>":
            f = _frame_of(gen)
            if f is not None:
                out.append(f)
        gen = gen.gi_yieldfrom
    return out


def touched(e: Event | None) -> dict:
    """What a SEAMCALL touched, for highlighting: {"sept": (level, gpa), "page": pa}."""
    out: dict = {}
    if e is None or e.source != MODULE_SOURCE:
        return out
    a = e.args
    if e.op in ("tdh_mem_range_block", "tdh_mem_page_remove",
                "tdh_mem_range_unblock") and len(a) >= 2:
        out["sept"] = (a[2] if len(a) > 2 else 0, a[1])
    elif e.op in ("tdh_mem_page_aug", "tdh_mem_sept_add") and len(a) == 4:
        out["sept"], out["page"] = (a[2], a[1]), a[3]
    elif e.op == "tdh_mem_page_add" and len(a) >= 3:
        out["sept"], out["page"] = (0, a[1]), a[2]
    elif e.op in ("tdh_phymem_page_reclaim", "tdh_phymem_page_wbinvd") and a:
        out["page"] = a[0] & PA_MASK
    elif e.op in ("tdh_mng_addcx", "tdh_vp_addcx") and len(a) == 2:
        out["page"] = a[1]
    elif e.op in ("tdh_mng_create", "tdh_vp_create") and a:
        out["page"] = a[-1] if e.op == "tdh_vp_create" else a[0]
    return out


def td_states(module, tdr: int | None = None) -> tuple[Lifecycle | None, OpState | None, bool]:
    """(lifecycle, op_state, reclaimed) of the TD `tdr` in `module` (default: its only TD).
    `reclaimed` is True once `tdr` was given but the module no longer knows it."""
    if tdr is None:
        tdr = next(iter(sorted(module.tds)), None)
        if tdr is None:
            return None, None, False
    td = module.tds.get(tdr)
    if td is None:
        return None, None, True
    return td.lifecycle, None if td.tdcs is None else td.tdcs.op_state, False


__all__ = ["Finished", "Frame", "StepInfo", "call_chain", "touched", "td_states",
           "LEAF_WORDS"]
