"""Lesson 04 (TD teardown): the exercise checkers and their hidden solutions.

Each checker runs the learner's answer on the model and judges it with the model: explorer
verdicts (`tdxedu.lessons.td_teardown`, `tdxedu.sim.explore`), the TDX module's status codes
and invariant checker (`TdxModule.check_invariants`), the cost model (`tdxedu.cost.predict`).
A checker returns a `Check` and never raises on a wrong answer; `show_solution(name)` is
collapsed until clicked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tdx import TdxModule
from ..tdx.pamt import PageType
from ..tdx.testing import TdBuilder
from .exercises import Check, Solution, _wrong
from .exercises import show_solution as _show_solution


# --- 04.1: release the HKID yourself -----------------------------------------------------------
@dataclass
class HkidLab:
    """A RUNNABLE TD on a 2-package machine (LPs 0-1 package 0, LPs 2-3 package 1), its two
    vCPUs associated with LP 0 and LP 2 (they ran and exited); the host LP is 1."""

    module: TdxModule
    tdr: int
    hkid: int
    vcpus: list[int]
    vcpu_lp: dict[int, int]
    pages: list[int] = field(repr=False)  # every page the TD owns, TDR last

    @property
    def packages(self) -> int:
        return self.module.num_packages

    def lp_of_package(self, pkg: int) -> int:
        return pkg * self.module.lps_per_package


def new_hkid_lab() -> HkidLab:
    m = TdxModule(memory=4 << 20, num_packages=2, lps_per_package=2)
    b = TdBuilder(m)
    t = b.build("finalized", vcpus=2, pages=1)
    for vp in t.vcpus:
        m.tdh_vp_enter(vp, lp=t.vcpu_lp[vp])
        m.td_exit(vp, "HLT", lp=t.vcpu_lp[vp])
    pages = (list(t.private.values()) + [t.sept_pages[k] for k in sorted(t.sept_pages)]
             + [pa for vp in t.vcpus for pa in t.tdcx[vp]] + list(t.vcpus) + list(t.tdcs)
             + [t.tdr])
    return HkidLab(m, t.tdr, t.hkid, list(t.vcpus), dict(t.vcpu_lp), pages)


def check_release_hkid(fn) -> Check:
    """`fn(lab)` releases the TD's HKID with SEAMCALLs on `lab.module` (see `HkidLab`). Then
    the checker reclaims every page of the TD with TDH.PHYMEM.PAGE.RECLAIM; all must work."""
    from ..tdx.td import KotState, Lifecycle

    if not callable(fn):
        return _wrong("pass a function that takes the lab")
    lab = new_hkid_lab()
    m = lab.module
    start = dict(m.counts)
    try:
        fn(lab)
    except Exception as exc:  # noqa: BLE001
        return _wrong(f"your function raised {type(exc).__name__}: {exc}")
    td = m.tds.get(lab.tdr)
    if td is None:
        return _wrong("the TD is gone: release the HKID, the checker reclaims the pages")
    if td.lifecycle != Lifecycle.TD_TEARDOWN:
        hint = {Lifecycle.TD_KEYS_CONFIGURED: "TDH.MNG.VPFLUSHDONE never succeeded: is every "
                "vCPU flushed on the LP it is associated with?",
                Lifecycle.TD_BLOCKED: "TD_BLOCKED: TDH.MNG.KEY.FREEID needs every package's "
                "cache written back first"}.get(td.lifecycle, "")
        return _wrong(f"the TD is {td.lifecycle.name}, not TD_TEARDOWN. {hint}".strip())
    if m.kot.get(lab.hkid) != KotState.HKID_FREE:
        return _wrong(f"the KOT says HKID {lab.hkid} is {m.kot[lab.hkid].name}")
    for pa in lab.pages:
        r = m.tdh_phymem_page_reclaim(pa, lp=1)
        if r.status.is_error:
            return _wrong(f"reclaiming page {pa:#x} failed: {r.status}")
    bad = m.check_invariants()
    if bad:
        return _wrong("the module's invariants fail: " + "; ".join(bad))
    if any(m.pamt.page_type(pa) != PageType.PT_NDA for pa in lab.pages):
        return _wrong("a page is still assigned after reclaim")
    used = {k: v - start.get(k, 0) for k, v in m.counts.items() if v - start.get(k, 0)}
    return Check(True, "HKID free, every page reclaimed, invariants hold; you issued "
                 + ", ".join(f"{k} x{n}" for k, n in sorted(used.items())
                             if k != "tdh_phymem_page_reclaim"))


# --- 04.2: which orders leak the HKID? --------------------------------------------------------
def check_hkid_leakers(answer) -> Check:
    """The set of teardown strategies for which the explorer finds `hkid_leaked` sometimes in
    the hkid-release scenario (a vCPU loaded again while the mm is released)."""
    from ..kvm.tdx import TEARDOWN_POLICIES
    from .td_teardown import hkid_release_verdicts

    try:
        answer = set(answer)
    except TypeError:
        return _wrong("give a set of strategy names, e.g. {'v6.16'}")
    unknown = answer - set(TEARDOWN_POLICIES)
    if unknown:
        return _wrong(f"unknown strategy {sorted(unknown)[0]!r}; strategies: "
                      f"{', '.join(TEARDOWN_POLICIES)}")
    v = hkid_release_verdicts()
    real = {s.removeprefix("hkid-release-") for s, row in v.items()
            if row["hkid_leaked"] != "never"}
    if answer == real:
        return Check(True, "only " + ", ".join(sorted(real)) + " can leak the HKID")
    if answer - real:
        return _wrong(f"{sorted(answer - real)[0]} never leaks it: when does it release the "
                      "HKID, and can a vCPU still enter then?")
    return _wrong("one more order can leak it: which one releases the HKID while vCPU fds "
                  "are still open?")


# --- 04.3: the cost of a big TD ------------------------------------------------------------------
def check_cost_estimate(seconds, *, memory: str = "400G", vcpus: int = 64,
                        strategy: str = "v6.16", clear_pages: bool = True,
                        tolerance: float = 0.25) -> Check:
    """Estimate the teardown time (seconds) of a TD; within `tolerance` of the cost model."""
    from ..cost import predict
    from ..tdx.pamt import PAGE_SIZE
    from ..units import parse_size

    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        return _wrong(f"answer with a positive number of seconds, got {seconds!r}")
    p = predict(parse_size(memory) // PAGE_SIZE, vcpus, strategy, clear_pages=clear_pages)
    real = p.seconds
    if abs(seconds - real) <= tolerance * real:
        return Check(True, f"the model predicts {real:,.0f} s for {memory}, {vcpus} vCPUs, "
                     f"{strategy} (band {p.band[0]:,.0f}..{p.band[1]:,.0f} s)")
    hint = "too high" if seconds > real else "too low"
    return _wrong(f"{seconds:,.0f} s is {hint}: how many 4 KiB pages is {memory}, and how "
                  "many microseconds per page did Adrian's runs cost?")


# --- solutions (hidden in the notebook) -------------------------------------------------------
def _solution_release_hkid(lab):
    m = lab.module
    for vp in lab.vcpus:  # tdx_flush_vp_on_cpu: on the LP the vCPU is associated with
        m.tdh_vp_flush(vp, lp=lab.vcpu_lp[vp])
    m.tdh_mng_vpflushdone(lab.tdr, lp=1)  # TD_BLOCKED, KOT HKID_FLUSHED
    for pkg in range(lab.packages):  # one CPU per package
        m.tdh_phymem_cache_wb(0, lp=lab.lp_of_package(pkg))
    m.tdh_mng_key_freeid(lab.tdr, lp=1)  # TD_TEARDOWN, KOT HKID_FREE


def _solution_cost():
    from tdxedu.cost import predict

    return predict(400 * 2**30 // 4096, 64, "v6.16").seconds


SOLUTIONS = {
    "release_hkid": _solution_release_hkid,
    "hkid_leakers": {"v19-notifier"},
    "cost_estimate": _solution_cost,
}


def show_solution(name: str) -> Solution:
    return _show_solution(name, SOLUTIONS)


__all__ = ["HkidLab", "new_hkid_lab", "check_release_hkid", "check_hkid_leakers",
           "check_cost_estimate", "SOLUTIONS", "show_solution"]
