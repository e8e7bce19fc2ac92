"""Dynamic PAMT explorer scenarios ([V2-CL], [V6-05]): two CPUs take and drop PAMT references
on the same 2 MB range at the same time.

Each CPU runs `tdx_pamt_get(pfn)` -> uses the page (the window in which the kernel is about
to hand it to the TDX module with PAGE.AUG, so the pair must exist) -> `tdx_pamt_put(pfn)`.
SEAMCALLs run stepwise (`fine_seamcalls`), so two PAMT.ADD/REMOVE on the range can overlap
inside the module and one gets TDX_OPERAND_BUSY (the 2 MB entry lock, [V3-CL]).

Conditions (read from state, never from the trace):
* ``pair_lost``  -- a CPU used its page while the range had no PAMT page pair (its PAGE.AUG
  would fail with TDX_MISSING_PAMT_PAGE_PAIR);
* ``pair_leaked`` -- at the end a pair is still installed with refcount 0, or pages are gone;
* ``get_failed`` -- a get returned an error (e.g. -EIO after a BUSY PAMT.ADD);
* ``refcount_nonzero`` -- refcounts not back to 0 at the end; ``busy`` -- a BUSY was seen.

Variants: ``pamt-get-put`` (v6: pamt_lock + fast paths) never loses or leaks a pair;
``pamt-get-put-no-pamt-lock`` and ``pamt-get-put-module-hint`` sometimes do. In the
module-hint variant no kernel refcount exists: a put removes the pair when the module's
removal hint says the range has no 4K page in use (here no TD page is mapped yet, so the hint
is computed from the module's own count, as PAGE.REMOVE would report it).
"""

from __future__ import annotations

from ..kvm.host import Host
from ..kvm.pamt import tdx_pamt_get, tdx_pamt_put
from ..sim.engine import World
from ..tdx.pamt import PageType
from ..trace import Preempt
from .registry import scenario

USING = Preempt("page in use: about to PAGE.AUG it")
RANGE = 1 << 21  # the contended 2 MB range (the host's second one)


class PamtWorld(World):
    """A DPAMT host and two CPUs racing on one 2 MB range. Cloneable: actors come from
    `self` only."""

    cloneable = True

    def __init__(self, *, policy: str = "vcpu-cache", pamt_lock: bool = True,
                 rounds: int = 1):
        self.host = Host(memory=4 << 20, cpus_per_package=2, dynamic_pamt=True,
                         pamt_policy=policy, pamt_lock=pamt_lock, fine_seamcalls=True)
        self.trace = self.host.trace
        self.rounds = rounds
        self.flags: dict[str, bool] = {}
        self.gets_ok = 0

    def cpu(self, cpu: int, pfn: int):
        host = self.host
        for _ in range(self.rounds):
            err = yield from tdx_pamt_get(host, pfn, None, cpu=cpu, who=f"cpu{cpu}")
            if err:
                self.flags["get_failed"] = True
                continue
            yield USING
            if host.module.pamt.range_pt(pfn << 12) != PageType.PT_PAMT:
                self.flags["pair_lost"] = True
            hint = host.module.pamt.pages_in_use_4k(pfn << 12) == 0
            yield from tdx_pamt_put(host, pfn, cpu=cpu, hint=hint, who=f"cpu{cpu}")

    def actors(self):
        base = RANGE >> 12
        return {"cpu0": self.cpu(0, base + 1), "cpu1": self.cpu(1, base + 2)}

    def fingerprint(self):
        p, m = self.host.pamt, self.host.module
        r = m.pamt.ranges.get(RANGE >> 21)
        rs = None if r is None else (r.pt, r.pages, r.lock.writer, tuple(r.lock.readers))
        return (tuple(sorted(p.pamt_refcounts.items())), rs, tuple(sorted(m.pamt.pamt_pages)),
                p.pamt_lock.owner, tuple(sorted(self.host.allocator.allocated)),
                tuple(self.host.allocator._free), p.busy_seen,
                tuple(sorted(self.flags.items())), len(p.leaked_pages), len(p.warnings))

    def invariants(self) -> list[str]:
        return self.host.module.check_invariants() + list(self.host.debug_errors)

    def conditions(self) -> dict[str, bool]:
        p, m = self.host.pamt, self.host.module
        installed = m.pamt.range_pt(RANGE) == PageType.PT_PAMT
        refs = sum(p.pamt_refcounts.values())
        return {
            "pair_lost": self.flags.get("pair_lost", False),
            "pair_leaked": (installed and refs == 0) or bool(p.leaked_pages)
            or (not installed and self.host.allocator.in_use > 0),
            "get_failed": self.flags.get("get_failed", False),
            "refcount_nonzero": refs != 0,
            "busy": p.busy_seen > 0,
            "pamt_warn": bool(p.warnings),
        }


VARIANTS = {
    "pamt-get-put": dict(policy="vcpu-cache", pamt_lock=True),
    "pamt-get-put-no-pamt-lock": dict(policy="vcpu-cache", pamt_lock=False),
    "pamt-get-put-module-hint": dict(policy="module-hint", pamt_lock=True),
}
for _name, _kw in VARIANTS.items():
    _how = (f"policy {_kw['policy']}, "
            f"{'with' if _kw['pamt_lock'] else 'without'} the kernel's pamt_lock")
    scenario(_name, f"two CPUs get/put PAMT on one 2 MB range ({_how})",
             max_steps=80)(lambda kw=_kw: PamtWorld(**kw))
