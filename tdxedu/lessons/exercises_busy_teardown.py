"""Exercise checkers for lessons 03 (TDX_OPERAND_BUSY) and 04 (TD teardown), and their hidden
solutions.

Each checker runs the learner's answer on the model and judges it with the model: the busy
matrix and explorer verdicts (`tdxedu.lessons.busy_teardown`, `tdxedu.sim.explore`), the TDX
module's status codes and invariant checker (`TdxModule.check_invariants`), the cost model
(`tdxedu.cost.predict`). A checker returns a `Check` and never raises on a wrong answer;
`show_solution(name)` is collapsed until clicked.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field

from ..tdx import TdxModule
from ..tdx.pamt import PageType
from ..tdx.testing import TdBuilder
from .exercises import Check, Solution
from .exercises import show_solution as _show_solution


def _wrong(msg: str) -> Check:
    return Check(False, msg)


# --- 03.1: predict who makes whom BUSY --------------------------------------------------------
def check_busy_prediction(guess) -> Check:
    """`guess` maps (holder, contender) to the short status you expect, e.g.
    ``{("guest ACCEPT of P", "BLOCK P"): "BUSY|RCX"}`` (names as in `busy_matrix()`; "ok" for
    TDX_SUCCESS). Every cell you give is checked against the model."""
    from .busy_teardown import CONTENDERS, HOLDERS, busy_matrix

    if not isinstance(guess, dict) or not guess:
        return _wrong("give a dict {(holder, contender): status}, with at least one cell")
    for key in guess:
        if not (isinstance(key, tuple) and len(key) == 2):
            return _wrong(f"{key!r}: keys are (holder, contender) pairs")
        h, c = key
        if h not in HOLDERS:
            return _wrong(f"unknown holder {h!r}; holders: {', '.join(HOLDERS)}")
        if c not in CONTENDERS:
            return _wrong(f"unknown contender {c!r}; contenders: {', '.join(CONTENDERS)}")
    real = busy_matrix()
    norm = {k: str(v).strip().upper().replace(" ", "") for k, v in guess.items()}
    wrong = [(k, v) for k, v in norm.items() if v != real[k[0]][k[1]].upper()]
    if wrong:
        (h, c), v = wrong[0]
        return _wrong(f"{len(wrong)} of {len(guess)} cells differ; e.g. with {h!r} held, "
                      f"{c} does not return {v}: which lock does each one take?")
    return Check(True, f"all {len(guess)} cells match the model")


# --- 03.2: write tdh_do_no_vcpus ---------------------------------------------------------------
@contextlib.contextmanager
def _policy_patched(fn):
    """Use `fn` as KVM's zap-path BUSY handler (`tdxedu.kvm.tdx.tdh_do_no_vcpus`) for a while."""
    from ..kvm import tdx as kvm_tdx

    orig = kvm_tdx.tdh_do_no_vcpus
    kvm_tdx.tdh_do_no_vcpus = fn
    try:
        yield
    finally:
        kvm_tdx.tdh_do_no_vcpus = orig


POLICY_SCENARIOS = ("busy-accept-no-retry", "busy-zero-step-no-retry")
POLICY_MUST = {"exception": "never", "invariant_violated": "never", "deadlock": "never",
               "kvm_bug": "never", "pages_leaked": "never", "step_bound": "never",
               "completed": "always"}


def policy_verdicts(fn, *, max_steps: int = 40) -> dict[str, dict[str, str]]:
    """Explore the busy scenarios with `fn` as the zap-path BUSY handler."""
    from ..sim import registry
    from ..sim.engine import explore

    registry.load_all()
    out = {}
    with _policy_patched(fn):
        for name in POLICY_SCENARIOS:
            sc = registry.get(name)
            ex = explore(sc.build, name=sc.name, max_steps=max_steps)
            out[name] = {c: v.verdict for c, v in ex.verdicts.items()}
            if out[name].get("exception", "never") != "never":
                w = ex.witness("exception")
                lines = (w.error or "").strip().splitlines() if w is not None else []
                out[name]["error"] = lines[-1] if lines else "?"
    return out


def check_busy_policy(fn) -> Check:
    """`fn(kt, name, *args, cpu)` is a generator that issues the SEAMCALL `name` with
    `r = yield from kt.sc(name, *args, cpu=cpu)` and returns the final `Status`, as KVM's
    `tdh_do_no_vcpus` does. It may set `kt.wait_for_sept_zap` and kick every vCPU with
    `yield from kt.kvm.kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)`. The checker
    explores both busy scenarios with it: no KVM_BUG_ON, no leak, no spin, no deadlock."""
    if not callable(fn) or not inspect.isgeneratorfunction(fn):
        return _wrong("pass a generator function (it must `yield from kt.sc(...)`)")
    try:
        v = policy_verdicts(fn)
    except Exception as exc:  # noqa: BLE001 - a learner's bug is a message
        return _wrong(f"exploring with your policy raised {type(exc).__name__}: {exc}")
    for sc, verdicts in v.items():
        if "error" in verdicts:
            return _wrong(f"{sc}: your policy raised in some interleaving: {verdicts['error']}")
        for cond, want in POLICY_MUST.items():
            got = verdicts.get(cond)
            if got != want:
                hint = {"kvm_bug": "a BUSY still reaches KVM_BUG_ON: who holds the lock, and "
                        "how do you make them let go?",
                        "step_bound": "KVM can spin forever with mmu_lock held: bound it",
                        "deadlock": "some actor waits forever: is every flag you set cleared?",
                        "completed": "not every run completes"}.get(cond, "")
                return _wrong(f"{sc}: {cond} is {got}, must be {want}. {hint}".strip())
    return Check(True, "kvm_bug never, no leak, no spin, no deadlock in every interleaving "
                 "of both busy scenarios")


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
    from .busy_teardown import hkid_release_verdicts

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
    from .td import parse_size

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


# --- solutions (hidden in the notebooks) ---------------------------------------------------------
def _solution_busy_policy(kt, name, *args, cpu):
    from tdxedu.kvm.kvm import KVM_REQ_OUTSIDE_GUEST_MODE
    from tdxedu.tdx import status as st

    r = yield from kt.sc(name, *args, cpu=cpu)
    if not r.status.matches(st.TDX_OPERAND_BUSY):
        return r.status
    kt.wait_for_sept_zap = True  # tdx_vcpu_run() now returns without VP.ENTER
    yield from kt.kvm.kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)  # kick, wait
    r = yield from kt.sc(name, *args, cpu=cpu)  # exactly one retry
    kt.wait_for_sept_zap = False
    return r.status


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
    "busy_prediction": {("guest ACCEPT of P", "BLOCK P"): "BUSY|RCX",
                        ("VP.ENTER 0-step check", "AUG"): "BUSY|SEPT",
                        ("TRACK", "VP.ENTER vCPU 1"): "BUSY|TD_EPOCH",
                        ("vCPU 0 in the guest", "TRACK"): "ok"},
    "busy_policy": _solution_busy_policy,
    "release_hkid": _solution_release_hkid,
    "hkid_leakers": {"v19-notifier"},
    "cost_estimate": _solution_cost,
}


def show_solution(name: str) -> Solution:
    return _show_solution(name, SOLUTIONS)


__all__ = ["check_busy_prediction", "check_busy_policy", "policy_verdicts", "HkidLab",
           "new_hkid_lab", "check_release_hkid", "check_hkid_leakers", "check_cost_estimate",
           "SOLUTIONS", "show_solution"]
