"""Lesson 05 (Dynamic PAMT): the exercise checkers and their hidden solutions.

Every checker runs the learner's answer on the model and judges it with the model: the TDX
module's status codes and invariant checker (`TdxModule.check_invariants`) or explorer
verdicts. A checker returns a `Check` and never raises on a wrong answer;
`show_solution(name)` is collapsed until clicked.
"""

from __future__ import annotations

import inspect
import random

from ..kvm.pamt_memory import (
    GiB,
    MiB,
    TdSpec,
    TiB,
    dpamt_static,
    host_pamt_bytes,
    static_pamt,
)
from ..tdx.pamt import PageType
from .dynamic_pamt import PAMT_SCENARIOS, pamt_race
from .exercises import Check, Solution, _wrong


# --- exercise 05.1: how much DPAMT for one TD --------------------------------------------------
def dpamt_bytes(host: int = TiB, td_memory: int = 64 * GiB) -> int:
    """DPAMT on a 1 TiB host with one 64 GiB TD, 4 KiB mappings, S-EPT packed, 8 vCPUs."""
    return host_pamt_bytes(host, [TdSpec(td_memory, "4k", 8, "packed")], dynamic=True).total


def check_dpamt_bytes(answer_mib) -> Check:
    """Dynamic PAMT memory (MiB, within 2 %) of a 1 TiB host running one 64 GiB TD mapped at
    4 KiB with its S-EPT pages packed: the static part plus the page pairs."""
    if isinstance(answer_mib, bool) or not isinstance(answer_mib, int | float):
        return _wrong(f"answer with a number of MiB, got {answer_mib!r}")
    real = dpamt_bytes() / MiB
    if abs(answer_mib - real) <= 0.02 * real:
        return Check(True, f"{real:.1f} MiB: {dpamt_static(TiB).total / MiB:.0f} MiB before "
                     f"any TD + {(dpamt_bytes() - dpamt_static(TiB).total) / MiB:.1f} MiB of "
                     "pairs; static PAMT would be 4104 MiB")
    if abs(answer_mib - static_pamt(TiB).total / MiB) < 0.02 * real * 10:
        return _wrong("that is static PAMT: with DPAMT, PAMT_4K exists only for 2 MiB ranges "
                      "that hold a 4 KiB TD page")
    hint = "too much" if answer_mib > real else "too little"
    return _wrong(f"{answer_mib} MiB is {hint}: add the bitmap, PAMT_2M, PAMT_1G, the "
                  "refcounts, and 8 KiB per 2 MiB range the TD touches at 4 KiB")


# --- exercise 05.2: write tdx_pamt_get / tdx_pamt_put -----------------------------------------
class PamtLab:
    """A Dynamic PAMT host with no KVM: you keep the refcounts (`lab.refcount`, 2 MiB index ->
    int) and call the two SEAMCALLs yourself:

        lab.pamt_add(pfn)      TDH.PHYMEM.PAMT.ADD for pfn's 2 MiB range (allocates the pair)
        lab.pamt_remove(pfn)   TDH.PHYMEM.PAMT.REMOVE (frees the pair it hands back)
        lab.has_pair(pfn)      is a pair installed over pfn's range?

    Both return the status as a string ("TDX_SUCCESS", ...)."""

    def __init__(self):
        from ..kvm.host import Host

        self.host = Host(memory=16 << 20, cpus_per_package=1, dynamic_pamt=True)
        self.module = self.host.module
        self.refcount: dict[int, int] = {}
        self.calls: list[tuple[str, int, str]] = []

    def pamt_add(self, pfn: int) -> str:
        hpa = (pfn >> 9) << 21
        a = self.host.allocator
        pages = [a.alloc_page("DPAMT"), a.alloc_page("DPAMT")]
        r = self.module.tdh_phymem_pamt_add(hpa, *pages, lp=0)
        if r.status.is_error:
            for pa in pages:
                a.free_page(pa)
        self.calls.append(("tdh_phymem_pamt_add", hpa, str(r.status)))
        return str(r.status)

    def pamt_remove(self, pfn: int) -> str:
        hpa = (pfn >> 9) << 21
        r = self.module.tdh_phymem_pamt_remove(hpa, lp=0)
        if not r.status.is_error:
            for pa in (r.rdx, r.r8):
                self.host.allocator.free_page(pa)
        self.calls.append(("tdh_phymem_pamt_remove", hpa, str(r.status)))
        return str(r.status)

    def has_pair(self, pfn: int) -> bool:
        return self.module.pamt.range_pt(pfn << 12) == PageType.PT_PAMT


def _workload(seed: int = 5, n: int = 40) -> list[tuple[str, int]]:
    """Pages of three 2 MiB ranges (4..10 MiB) taken and dropped in a seeded order."""
    rng = random.Random(seed)
    pool = [(r << 9) + rng.randrange(8, 500) for r in (2, 3, 4) for _ in range(6)]
    pool = sorted(set(pool))
    held: list[int] = []
    ops = []
    while len(ops) < n or held:
        if held and (len(ops) >= n or rng.random() < 0.45 or not pool):
            pfn = held.pop(rng.randrange(len(held)))
            pool.append(pfn)
            ops.append(("put", pfn))
        elif pool:
            pfn = pool.pop(rng.randrange(len(pool)))
            held.append(pfn)
            ops.append(("get", pfn))
    return ops


def check_pamt_refcounting(get, put, *, seed: int = 5) -> Check:
    """`get(lab, pfn)` / `put(lab, pfn)`: keep `lab.refcount` per 2 MiB range and call
    `lab.pamt_add` / `lab.pamt_remove` so that every page you hold has a pair over its range,
    with one ADD per 0 -> 1 and one REMOVE per 1 -> 0 (v6 `tdx_pamt_get/put`, [V6-05])."""
    if not callable(get) or not callable(put):
        return _wrong("pass two functions: get(lab, pfn) and put(lab, pfn)")
    lab = PamtLab()
    held: dict[int, int] = {}
    transitions = 0
    for i, (op, pfn) in enumerate(_workload(seed)):
        idx = pfn >> 9
        before = held.get(idx, 0)
        try:
            (get if op == "get" else put)(lab, pfn)
        except Exception as exc:  # noqa: BLE001 - a learner's bug is a message
            return _wrong(f"step {i + 1} ({op} {pfn:#x}): your function raised "
                          f"{type(exc).__name__}: {exc}")
        held[idx] = before + (1 if op == "get" else -1)
        if (op == "get" and before == 0) or (op == "put" and before == 1):
            transitions += 1
        errs = [c for c in lab.calls if not c[2].startswith("TDX_SUCCESS")]
        if errs:
            name, hpa, status = errs[0]
            return _wrong(f"step {i + 1} ({op} of pfn {pfn:#x}): {name}({hpa:#x}) returned "
                          f"{status}")
        if op == "get" and not lab.has_pair(pfn):
            return _wrong(f"step {i + 1}: you hold pfn {pfn:#x} but its 2 MiB range has no "
                          "pair: PAGE.AUG would fail with TDX_MISSING_PAMT_PAGE_PAIR")
        if op == "put" and held[idx] == 0 and lab.has_pair(pfn):
            return _wrong(f"step {i + 1}: the last page of range {idx << 21:#x} is gone but "
                          "its pair is still installed (8 KiB leaked)")
        if op == "put" and held[idx] > 0 and not lab.has_pair(pfn):
            return _wrong(f"step {i + 1}: you removed the pair of range {idx << 21:#x} while "
                          f"{held[idx]} of its pages are still in use")
    bad = lab.module.check_invariants()
    if bad:
        return _wrong("the module's invariants fail: " + "; ".join(bad))
    if len(lab.calls) != transitions:
        return _wrong(f"{len(lab.calls)} PAMT SEAMCALLs for {transitions} 0<->1 transitions: "
                      "call ADD/REMOVE only when the count crosses zero")
    if lab.host.allocator.in_use:
        return _wrong(f"{lab.host.allocator.in_use} pair pages never freed")
    return Check(True, f"{len(_workload(seed))} gets/puts on 3 ranges, {transitions} PAMT "
                 "SEAMCALLs (one per 0<->1 transition), module invariants hold")


# --- exercise 05.3: which designs can lose a pair? ---------------------------------------------
def check_lossy_scenarios(answer) -> Check:
    """The set of `pamt-get-put*` scenarios for which the explorer says `pair_lost` is
    "sometimes" (a CPU uses its page while the range has no pair)."""
    if isinstance(answer, str):
        answer = {answer}
    try:
        answer = set(answer)
    except TypeError:
        return _wrong(f"answer with a set of scenario names, got {answer!r}")
    unknown = answer - set(PAMT_SCENARIOS)
    if unknown:
        return _wrong(f"unknown scenario {sorted(unknown)[0]!r}; choose from "
                      f"{', '.join(PAMT_SCENARIOS)}")
    real = {n for n, e in pamt_race().items() if e.verdict("pair_lost") != "never"}
    if answer == real:
        return Check(True, "pamt_lock makes 'read count, decide, SEAMCALL, update count' "
                     "atomic; the other two designs let a REMOVE slip between a get and its use")
    if answer - real:
        return _wrong(f"{sorted(answer - real)[0]} never loses a pair in any interleaving")
    return _wrong(f"{sorted(real - answer)[0]} also loses a pair in some interleaving")


# --- solutions (hidden in the notebook) -------------------------------------------------------
def _solution_get(lab, pfn):
    idx = pfn >> 9
    if lab.refcount.get(idx, 0) == 0:  # 0 -> 1: install the pair first
        lab.pamt_add(pfn)
    lab.refcount[idx] = lab.refcount.get(idx, 0) + 1


def _solution_put(lab, pfn):
    idx = pfn >> 9
    lab.refcount[idx] -= 1
    if lab.refcount[idx] == 0:  # 1 -> 0: the last page of the range is gone
        lab.pamt_remove(pfn)


SOLUTIONS = {
    "dpamt_bytes_1tib_64g": "round(dpamt_bytes() / MiB, 1)  # "
                            "(42 MiB static + 256 MiB guest pairs + S-EPT/control pairs)",
    "pamt_get": _solution_get,
    "pamt_put": _solution_put,
    "lossy_scenarios": {"pamt-get-put-no-pamt-lock", "pamt-get-put-module-hint"},
}


def show_solution(name: str) -> Solution:
    if name not in SOLUTIONS:
        raise KeyError(f"no solution named {name!r}; known: {', '.join(sorted(SOLUTIONS))}")
    sol = SOLUTIONS[name]
    if name == "dpamt_bytes_1tib_64g":
        sol = f"{dpamt_bytes() / MiB:.1f} MiB  # " + SOLUTIONS[name].split("# ", 1)[1]
    if name in ("pamt_get", "pamt_put"):
        body = inspect.getsource(_solution_get) + "\n\n" + inspect.getsource(_solution_put)
        return Solution("pamt_get_put", body)
    body = inspect.getsource(sol) if callable(sol) else (
        repr(sorted(sol)) if isinstance(sol, set) else sol if isinstance(sol, str) else repr(sol))
    return Solution(name, body)


__all__ = ["dpamt_bytes", "check_dpamt_bytes", "PamtLab", "check_pamt_refcounting",
           "check_lossy_scenarios", "SOLUTIONS", "show_solution"]
