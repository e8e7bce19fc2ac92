"""Removing one private page from a running TD by hand, one operation per Step (lesson 02):
`RemovalSource`."""

from __future__ import annotations

from ..tdx import TdxModule
from ..tdx.testing import TdBuilder
from ..trace import MODULE_SOURCE, Trace
from .seamcalls import _parse_ops
from .step import Finished, Frame, StepInfo

# --- removing one private page by hand (lesson 02) ------------------------------------------
REMOVAL_OPS = ("block", "track", "kick", "reenter", "remove", "wbinvd", "unblock")
KVM_REMOVAL = ("block", "track", "kick", "remove", "wbinvd")
REMOVAL_WHY = {
    "block": ("tdh_mem_range_block", "tdx_sept_remove_private_spte",
              "BLOCK: the S-EPT entry stops producing new translations; BEPOCH = TD_EPOCH"),
    "track": ("tdh_mem_track", "tdx_track",
              "TRACK: TD_EPOCH++; vCPUs still in the guest from the old epoch are counted"),
    "kick": ("kvm_make_all_cpus_request", "tdx_track",
             "kick: KVM_REQ_OUTSIDE_GUEST_MODE IPIs every vCPU out of the guest and waits"),
    "reenter": ("tdh_vp_enter", "vcpu_enter_guest",
                "vCPUs re-enter: in the new epoch, flushing their TLB first"),
    "remove": ("tdh_mem_page_remove", "tdx_sept_remove_private_spte",
               "REMOVE: only a blocked entry whose block epoch has been tracked"),
    "wbinvd": ("tdh_phymem_page_wbinvd", "tdx_sept_remove_private_spte",
               "WBINVD the page under the TD's HKID before the host reuses it"),
    "unblock": ("tdh_mem_range_unblock", "tdx_sept_remove_private_spte",
                "UNBLOCK: undo a BLOCK (needs TLB tracking too)"),
}
SRC_KVM = "arch/x86/kvm/vmx/tdx.c"


class RemovalSource:
    """A running TD (`vcpus` vCPUs in the guest, `pages` private pages, HKID assigned); one
    step per operation of `ops` on the page at GPA `gpa`, issued from the host LP.
    The real sequence is 6.16 `tdx_sept_remove_private_spte` ([K616])."""

    STEP_IS = ("one operation from the list: one SEAMCALL for block, track, remove, wbinvd "
               "and unblock; for kick, the IPIs that force every vCPU out of the guest (their "
               "TD exits come with it); for reenter, a VP.ENTER per vCPU.")

    def __init__(self, ops=KVM_REMOVAL, *, vcpus: int = 2, gpa: int = 0x1000):
        self.ops = _parse_ops(ops, REMOVAL_OPS, "operation")
        if isinstance(vcpus, bool) or not isinstance(vcpus, int) or not 0 <= vcpus <= 3:
            raise ValueError(f"vcpus must be an int from 0 to 3, got {vcpus!r}")
        if gpa not in (0, 0x1000):
            raise ValueError("gpa must be 0x0 or 0x1000 (the TD has two private pages)")
        self.vcpus, self.gpa = vcpus, gpa
        self.title = (f"remove the page at GPA {gpa:#x} from a TD with {vcpus} vCPU"
                      f"{'s' * (vcpus != 1)} in the guest: " + ", ".join(self.ops))
        self.panels = ("sept", "timeline")
        self.kvm = None
        self.reset()

    def reset(self) -> None:
        self.trace = Trace(enabled=False)
        self.module = TdxModule(memory=4 << 20, lps_per_package=4, trace=self.trace)
        b = TdBuilder(self.module)
        self.built = b.build("finalized", vcpus=self.vcpus, pages=2)
        self.tdr = self.built.tdr
        self.host_lp = self.module.num_lps - 1
        for vp in self.built.vcpus:
            self.module.tdh_vp_enter(vp, lp=self.built.vcpu_lp[vp])
        self.trace.enabled = True
        self.trace.actor = "kvm"
        self.n = 0
        self.done = False
        self.step_of: dict[int, int] = {}  # event seq -> the Step that recorded it

    def in_guest(self) -> list[int]:
        return [vp for vp in self.built.vcpus if self.module.vcpus[vp].in_guest]

    def do(self, op: str) -> None:
        """Issue one operation now (exercises call this: `lab.do("block")`)."""
        self._issue(_parse_ops([op], REMOVAL_OPS, "operation")[0])

    def _issue(self, op: str) -> None:
        m, tdr, gpa, lp = self.module, self.tdr, self.gpa, self.host_lp
        if op == "block":
            m.tdh_mem_range_block(tdr, gpa, 0, lp=lp)
        elif op == "track":
            m.tdh_mem_track(tdr, lp=lp)
        elif op == "kick":
            running = self.in_guest()
            self.trace.emit("kvm_make_all_cpus_request", "KVM_REQ_OUTSIDE_GUEST_MODE",
                            f"ipi={len(running)}", source="virt/kvm/kvm_main.c")
            for vp in running:
                m.td_exit(vp, "EXTERNAL_INTERRUPT", lp=self.built.vcpu_lp[vp])
        elif op == "reenter":
            for vp in self.built.vcpus:
                if not m.vcpus[vp].in_guest:
                    m.tdh_vp_enter(vp, lp=self.built.vcpu_lp[vp])
        elif op == "remove":
            m.tdh_mem_page_remove(tdr, gpa, 0, lp=lp)
        elif op == "wbinvd":
            m.tdh_phymem_page_wbinvd_hkid(self.built.hkid, self.built.private[gpa], lp=lp)
        elif op == "unblock":
            m.tdh_mem_range_unblock(tdr, gpa, 0, lp=lp)

    def step(self) -> StepInfo:
        if self.done:
            raise Finished("every operation in your list has been issued: press Reset")
        op = self.ops[self.n]
        first = len(self.trace)
        self._issue(op)
        self.n += 1
        self.done = self.n >= len(self.ops)
        for e in self.trace.events[first:]:
            self.step_of[e.seq] = self.n
        leaf, fn, why = REMOVAL_WHY[op]
        return StepInfo(self.n, self.trace.events[first:], [Frame(fn, SRC_KVM, why)],
                        note=why)

    def page_state(self) -> str:
        e = self.module.tds[self.tdr].tdcs.sept.entries.get((0, self.gpa))
        return "FREE" if e is None else e.state.name

    def summary(self) -> str:
        c = self.module.tds[self.tdr].tdcs
        calls = [e for e in self.trace if e.source == MODULE_SOURCE and e.op != "td_exit"]
        exits = sum(e.op == "td_exit" for e in self.trace)
        lines = [f"after {self.n}/{len(self.ops)} operations: page {self.gpa:#x} is "
                 f"{self.page_state()}; TD_EPOCH={c.td_epoch} REFCOUNT={c.refcount}; "
                 f"vCPUs in guest: {len(self.in_guest())}",
                 f"  {len(calls)} SEAMCALL{'s' * (len(calls) != 1)} (one row each)"
                 + (f"; {exits} TD exit{'s' * (exits != 1)} from kicks, not listed"
                    if exits else "")]
        for e in calls:
            lines.append(f"  step {self.step_of.get(e.seq, 0):>2}  {e.op:<24} {e.status}")
        return "\n".join(lines)


__all__ = ["RemovalSource", "REMOVAL_OPS", "KVM_REMOVAL"]
