"""Lessons 05 (Dynamic PAMT) and 06 (TDP MMU roots): the text summaries their golden cells
print, the exercise checkers, and the hidden solutions.

Every summary is computed by the model (`tdxedu.kvm.pamt_memory`, `tdxedu.kvm.pamt`,
`tdxedu.lessons.root_scenarios`, the explorer); every checker runs the learner's answer on
the model and judges it with the model: the TDX module's status codes and invariant checker
(`TdxModule.check_invariants`), explorer verdicts, or the TDP MMU invariant checker
(`tdxedu.kvm.tdp_mmu_invariants`, reference/tdp_mmu_roots.md §5.3). A checker returns a
`Check` and never raises on a wrong answer; `show_solution(name)` is collapsed until clicked.
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
    dpamt_td_bytes,
    host_pamt_bytes,
    static_pamt,
    v6_cover_letter_table,
)
from ..sim.engine import explore
from ..tdx.pamt import PageType
from .exercises import Check, Solution
from .root_scenarios import (
    last_put_race_world,
    memslot_update_world,
    smm_storm_world,
)

KiB = 1 << 10


def _wrong(msg: str) -> Check:
    return Check(False, msg)


def _fmt(n: int) -> str:
    """Bytes in the largest binary unit that keeps three significant digits."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.3f} {unit}"
    return f"{n} B"


# ============================================================================================
# 05 · Dynamic PAMT
# ============================================================================================

def pamt_per_tib_text() -> str:
    """Static PAMT vs Dynamic PAMT (before any TD) per TiB of TDX memory (dpamt.md §1.3, §4)."""
    s, d = static_pamt(TiB), dpamt_static(TiB)
    rows = [("PAMT_4K (16 B per 4 KiB)", s.pamt_4k, d.pamt_4k),
            ("PAMT_2M (16 B per 2 MiB)", s.pamt_2m, d.pamt_2m),
            ("PAMT_1G (16 B per 1 GiB)", s.pamt_1g, d.pamt_1g),
            ("PAMT_PAGE_BITMAP (1 bit per 4 KiB)", s.bitmap, d.bitmap),
            ("pamt_refcounts (4 B per 2 MiB)", s.refcounts, d.refcounts),
            ("total", s.total, d.total)]
    lines = [f"{'per TiB of TDX memory':<36} {'static PAMT':>12} {'DPAMT, no TD':>12}"]
    lines += [f"{name:<36} {_fmt(a) if a else '-':>12} {_fmt(b) if b else '-':>12}"
              for name, a, b in rows]
    lines.append(f"{'share of memory':<36} {s.total / TiB:>11.3%} {d.total / TiB:>11.4%}")
    return "\n".join(lines)


def cover_letter_text() -> str:
    """The v6 cover letter's table ([V6-CL]), recomputed by `v6_cover_letter_table()`."""
    lines = [f"{'machine':>8} {'max_pfn at':>11} {'PAMT GB':>8} {'DPAMT GB':>9} {'PAMT/DPAMT':>11}"]
    for r in v6_cover_letter_table():
        where = "max PA" if r["max_pfn_at_max_pa"] else "end of RAM"
        size = f"{r['machine_gb']} GB" if r["machine_gb"] < 1024 else \
            f"{r['machine_gb'] // 1024} TB"
        ratio = r["ratio"]
        rs = f"{ratio:.0f}x smaller" if ratio >= 1.5 else (
            f"{1 / ratio:.0f}x larger" if ratio < 0.67 else "~1x")
        lines.append(f"{size:>8} {where:>11} {r['pamt_gb']:>8.2f} {r['dpamt_gb']:>9.2f} "
                     f"{rs:>11}")
    return "\n".join(lines)


def host_example_text(host: int = TiB, td_memory: int = 64 * GiB, vcpus: int = 8) -> str:
    """A 1 TiB host running one 64 GiB TD (dpamt.md §4 worked example)."""
    lines = [f"host {host // GiB} GiB of TDX memory, one TD of {td_memory // GiB} GiB, "
             f"{vcpus} vCPUs"]
    lines.append(f"  static PAMT (any number of TDs):      {_fmt(static_pamt(host).total):>12}")
    lines.append(f"  Dynamic PAMT, no TD:                  "
                 f"{_fmt(host_pamt_bytes(host, (), dynamic=True).total):>12}")
    for label, spec in (
            ("4 KiB mappings, S-EPT packed", TdSpec(td_memory, "4k", vcpus, "packed")),
            ("4 KiB mappings, S-EPT spread", TdSpec(td_memory, "4k", vcpus, "spread")),
            ("2 MiB mappings (huge pages)", TdSpec(td_memory, "2m", vcpus, "packed"))):
        total = host_pamt_bytes(host, [spec], dynamic=True).total
        parts = dpamt_td_bytes(spec)
        lines.append(f"  Dynamic PAMT, {label:<29} {_fmt(total):>12}   (pairs: guest "
                     f"{_fmt(parts['guest'])}, S-EPT {_fmt(parts['sept'])}, control "
                     f"{_fmt(parts['control'])})")
    return "\n".join(lines)


def pamt_memory_curves(host: int = TiB, td_memory: int = 64 * GiB, max_tds: int = 16):
    """{label: (guest GiB in TDs, PAMT bytes)} for 0..max_tds TDs of `td_memory` each."""
    ks = list(range(max_tds + 1))
    xs = [k * td_memory // GiB for k in ks]
    out = {"static PAMT": (xs, [static_pamt(host).total] * len(ks))}
    for label, spec in (("DPAMT, 4K, S-EPT packed", TdSpec(td_memory, "4k", 8, "packed")),
                        ("DPAMT, 4K, S-EPT spread", TdSpec(td_memory, "4k", 8, "spread")),
                        ("DPAMT, 2M huge pages", TdSpec(td_memory, "2m", 8, "packed"))):
        out[label] = (xs, [host_pamt_bytes(host, [spec] * k, dynamic=True).total for k in ks])
    return out


# --- the allocation debate, policy by policy ----------------------------------------------------
POLICY_STORY = {
    "vcpu-cache": "v6 (May 2026): per-vCPU pamt_cache topped up before mmu_lock; "
                  "tdx_pamt_get under mmu_lock takes pages from it",
    "phys-prepare": "RFC (May 2025): phys_prepare() draws on a pool the TDP MMU passes in; "
                    "callers without a vCPU get none",
    "kmem-cache-ctor": "Kai Huang (RFC-08 thread): S-EPT pages from a kmem_cache whose "
                       "constructor installs DPAMT",
    "gmem-prepare": "Sean / guest_memfd hook (v2 review, Aug 2025): PAMT when guest_memfd "
                    "allocates the page",
    "module-hint": "'previous attempt' (v2 cover letter): no kernel refcount, ADD before every "
                   "page, REMOVE on the module's removal hint",
}


def gmem_thp_collapse(policy: str = "gmem-prepare") -> dict:
    """Kirill's objection to `kvm_arch_gmem_prepare` (dpamt.md §3.1): guest_memfd allocates
    (and, under "gmem-prepare", PAMT-prepares) a page; khugepaged collapses the folio before
    the EPT mapping, so a different pfn gets mapped. Returns the mapping's status and what is
    left after teardown."""
    from ..kvm.pamt import tdx_topup_pamt_cache, thp_collapse, vcpu_pamt_cache
    from ..kvm.tdx import _gmem_alloc, tdx_map_private_gfn
    from ..trace import run_to_completion
    from .td import RunningTd

    td = RunningTd("64K", 1, dynamic_pamt=True, pamt_policy=policy, trace=False)
    kt, v0 = td.kt, td.kvm.vcpus[0]
    gpa = td.pages * 4096
    run_to_completion(_gmem_alloc(kt, gpa, v0.cpu))
    thp_collapse(kt, gpa)
    tdx_topup_pamt_cache(td.host, vcpu_pamt_cache(v0))
    err = run_to_completion(tdx_map_private_gfn(td.kvm, gpa, v0.cpu, v0))
    report = td.teardown()
    return {"map": "ok" if err is None else str(err), "pairs_left": report.pamt_pairs,
            "refs_left": report.pamt_refcounts, "clean": report.ok}


def policy_consequences(memory: str = "256K", vcpus: int = 2) -> dict[str, str]:
    """Each allocation policy's consequence on a full TD life (and, for gmem-prepare, a THP
    collapse between allocation and mapping), in one line."""
    from ..kvm.pamt import ALLOC_POLICIES
    from .td import RunningTd

    out = {}
    for pol in ALLOC_POLICIES:
        try:
            td = RunningTd(memory, vcpus, dynamic_pamt=True, pamt_policy=pol, trace=False)
        except MemoryError as exc:
            out[pol] = f"build fails: {exc}"
            continue
        built = dict(td.host.module.counts)
        r = td.teardown()
        adds = built.get("tdh_phymem_pamt_add", 0) + r.counts.get("tdh_phymem_pamt_add", 0)
        removes = r.counts.get("tdh_phymem_pamt_remove", 0)
        pooled = len(td.host.pamt.sept_kmem_cache)
        line = (f"{'clean' if r.ok else 'NOT clean'}: {adds} PAMT.ADD, {removes} PAMT.REMOVE; "
                f"after teardown {r.pamt_pairs} pairs, refcounts {r.pamt_refcounts}")
        if pooled:
            line += f", {pooled} S-EPT pages pooled with their PAMT (no TD left)"
        if pol == "gmem-prepare":
            g = gmem_thp_collapse(pol)
            line += (f"; after a THP collapse the mapping gets {g['map']} and "
                     f"{g['refs_left']} reference stays on the old range")
        out[pol] = line
    return out


def policy_consequences_text(memory: str = "256K", vcpus: int = 2) -> str:
    lines = [f"a {memory} TD with {vcpus} vCPUs, built and torn down (v6.16 order):"]
    for pol, line in policy_consequences(memory, vcpus).items():
        lines.append(f"  {pol:<16} {line}")
    return "\n".join(lines)


# --- the concurrent get/put race ---------------------------------------------------------------
PAMT_SCENARIOS = ("pamt-get-put", "pamt-get-put-no-pamt-lock", "pamt-get-put-module-hint")


def pamt_race(names=PAMT_SCENARIOS) -> dict:
    """{scenario: Exploration} for the DPAMT race scenarios."""
    from ..sim import registry

    out = {}
    for n in names:
        sc = registry.get(n)
        out[n] = explore(sc.build, name=n, max_steps=sc.max_steps)
    return out


def pamt_race_text(conditions=("pair_lost", "get_failed", "busy", "refcount_nonzero",
                               "pair_leaked")) -> str:
    ex = pamt_race()
    w = max(len(n) for n in ex)
    lines = [f"{'scenario':<{w}} " + " ".join(f"{c:>16}" for c in conditions)]
    for n, e in ex.items():
        lines.append(f"{n:<{w}} " + " ".join(f"{e.verdict(c):>16}" for c in conditions))
    for n in PAMT_SCENARIOS[1:]:
        r = ex[n].witness("pair_lost")
        lines.append(f"\nshortest pair_lost witness, {n} ({r.steps} steps): "
                     + " ".join(r.choices))
        for e in r.trace:
            if e.op in ("tdh_phymem_pamt_add", "tdh_phymem_pamt_remove") and e.status:
                lines.append(f"  cpu{e.cpu}: {e.op}({', '.join(_hx(a) for a in e.args[:1])}) "
                             f"-> {e.status}")
    return "\n".join(lines)


def _hx(a) -> str:
    return f"{a:#x}" if isinstance(a, int) and not isinstance(a, bool) else str(a)


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


# ============================================================================================
# 06 · TDP MMU roots
# ============================================================================================

def root_policy_table() -> str:
    """The kernel-version policies of root management (mmu_role.POLICIES)."""
    from ..kvm.mmu_role import POLICIES

    lines = [f"{'policy':<7} {'new root count':>14} {'count hits 0 on a valid root':>29} "
             f"{'zap':>9} {'root types':>10}  alloc / invalidate"]
    for p in POLICIES.values():
        lines.append(f"{p.name:<7} {p.initial_refcount:>14} {p.zero_on_valid:>29} "
                     f"{p.zap_via:>9} {'yes' if p.root_types else 'no':>10}  "
                     f"{p.alloc_fn} / {p.invalidate_fn}")
    return "\n".join(lines)


def storm_table(ns=(0, 1, 2, 5, 10, 20, 50), n_vcpus: int = 1) -> str:
    from ..kvm.mmu_role import POLICIES
    from .root_scenarios import smm_storm

    lines = [f"root allocations after N SMI/RSM round trips ({n_vcpus} vCPU)",
             f"{'N':>4} " + " ".join(f"{p:>7}" for p in POLICIES)
             + "   page-table pages v6.3 / v6.16"]
    for n in ns:
        row = {p: smm_storm(p, n, n_vcpus) for p in POLICIES}
        lines.append(f"{n:>4} " + " ".join(f"{row[p]['root_allocations']:>7}" for p in POLICIES)
                     + f"   {row['v6.3']['page_table_pages_allocated']:>6} / "
                     f"{row['v6.16']['page_table_pages_allocated']}")
    return "\n".join(lines)


def scenario_verdicts_text(names, conditions) -> str:
    from ..sim import registry

    w = max(len(n) for n in names)
    lines = [f"{'scenario':<{w}} " + " ".join(f"{c:>{max(len(c), 9)}}" for c in conditions)]
    for n in names:
        sc = registry.get(n)
        e = explore(sc.build, name=n, max_steps=sc.max_steps)
        lines.append(f"{n:<{w}} " + " ".join(f"{e.verdict(c):>{max(len(c), 9)}}"
                                               for c in conditions))
    return "\n".join(lines)


def td_roots_text(seed: int = 0) -> str:
    """A TD's roots after a memslot update and after destruction (v6.16, one seeded run)."""
    from ..sim.engine import run_seeded
    from .root_scenarios import memslot_update_world, vm_destroy_world

    lines = []
    for label, build in (("TD, memslot deleted (fast zap)",
                          lambda: memslot_update_world("v6.16", 2, 2, td=True)),
                         ("TD destroyed", lambda: vm_destroy_world("v6.16", 2, 0, td=True))):
        holder = {}

        def b(build=build, holder=holder):
            holder["w"] = build()
            return holder["w"]

        r = run_seeded(b, seed, max_steps=300)
        kvm = holder["w"].kvm
        roots = sorted({id(x): x for x in list(kvm.arch.tdp_mmu_roots)
                        + list(kvm.arch.tdp_mmu_live.values())}.values(), key=lambda x: x.hpa)
        st = kvm.arch.tdp_mmu_stats
        lines.append(f"{label}: outcome {r.outcome}, {st['roots_allocated']} roots allocated "
                     f"({st['roots_allocated_mirror']} mirror), {st['roots_freed']} freed")
        for x in roots:
            refs = ", ".join(f"{h}={n}" for h, n in sorted(x.refs.items()) if n)
            lines.append(f"  root#{x.hpa} {x.role}: count {x.tdp_mmu_root_count} ({refs})")
        if not roots:
            lines.append("  no roots left")
    return "\n".join(lines)


def broken_variants_text() -> str:
    """Each broken variant, the invariant it names, and where the checker catches it."""
    from ..kvm.mmu_role import BROKEN_POLICIES
    from ..sim.engine import run_script

    lines = []
    for name, build in BROKEN_CASES.items():
        w = broken_witness(name)
        r = run_script(build, w, max_steps=300)
        tag = BROKEN_POLICIES[name].broken
        first = next((v for v in r.violations if v.startswith(tag + ":")), r.violations[0])
        lines.append(f"{name:<29} {tag:<5} step {r.steps:>2} ({w[-1]}): {first}")
    return "\n".join(lines)


# --- broken variants -------------------------------------------------------------------------
BROKEN_CASES = {
    "broken-free-valid-root": lambda: smm_storm_world("broken-free-valid-root", 1, 1),
    "broken-get-unconditional": lambda: last_put_race_world("broken-get-unconditional", 2),
    "broken-resurrect-no-zap": lambda: last_put_race_world("broken-resurrect-no-zap", 1),
    "broken-fast-zap-mirror": lambda: memslot_update_world("broken-fast-zap-mirror", 1, 1,
                                                           td=True),
    "broken-invalidate-no-request": lambda: memslot_update_world(
        "broken-invalidate-no-request", 1, 2),
}
WHAT_IT_BREAKS = {
    "broken-free-valid-root": "put frees a root at count 0 without checking it is invalid, "
                              "on pre-FIX counting (new roots start at 1)",
    "broken-get-unconditional": "get increments from zero: a reader revives a dying root",
    "broken-resurrect-no-zap": "v6.3 resurrection without queueing the zap",
    "broken-fast-zap-mirror": "fast zap invalidates KVM_VALID_ROOTS, mirror root included",
    "broken-invalidate-no-request": "invalidation without KVM_REQ_MMU_FREE_OBSOLETE_ROOTS",
}
_WITNESS: dict[str, list[str]] = {}


def broken_witness(variant: str) -> list[str]:
    """The shortest schedule (actor names) after which the invariant checker fires."""
    if variant not in BROKEN_CASES:
        raise ValueError(f"unknown broken variant {variant!r}; choose from "
                         f"{', '.join(BROKEN_CASES)}")
    if variant not in _WITNESS:
        e = explore(BROKEN_CASES[variant], name=variant, max_steps=300)
        v = e.verdicts["invariant_violated"]
        _WITNESS[variant] = list(v.witness or [])
    return list(_WITNESS[variant])


# --- exercise 06.1: predict the storm ----------------------------------------------------------
def check_storm_allocations(answer, *, policy: str = "v6.3", n: int = 1000) -> Check:
    """Root allocations after `n` SMI/RSM round trips on a 1-vCPU VM under `policy`."""
    from .root_scenarios import smm_storm

    if isinstance(answer, bool) or not isinstance(answer, int):
        return _wrong(f"answer with an int, got {answer!r}")
    real = smm_storm(policy, n)["root_allocations"]
    if answer == real:
        return Check(True, f"{real} root allocations under {policy} after {n} round trips")
    return _wrong(f"{answer} is too {'many' if answer > real else 'few'}: count the roots "
                  "alive before the first SMI, then what each SMI and each RSM costs")


# --- exercise 06.2: find the interleaving ------------------------------------------------------
def check_resurrection_schedule(script) -> Check:
    """A schedule (actor names) of `roots-last-put-race-v6.3` in which the reader's final
    iterator step puts the root's last reference under the read lock, so v6.3 resurrects it
    (condition `resurrected_under_read_lock`), with every §5.3 invariant holding."""
    from ..sim import registry
    from ..sim.engine import run_script

    if isinstance(script, str):
        script = [s.strip() for s in script.replace(",", " ").split() if s.strip()]
    try:
        script = list(script)
    except TypeError:
        return _wrong("answer with a list of actor names, e.g. ['reader0', 'vcpu0', ...]")
    if not all(isinstance(s, str) for s in script):
        return _wrong("answer with a list of actor names (strings)")
    sc = registry.get("roots-last-put-race-v6.3")
    try:
        r = run_script(sc.build, script, max_steps=sc.max_steps)
    except Exception as exc:  # noqa: BLE001 - a bad name is a message
        return _wrong(f"{type(exc).__name__}: {exc}")
    if r.outcome in ("invariant_violated", "exception"):
        return _wrong(f"the run ended with {r.outcome}: {(r.violations or [r.error])[0]}")
    if not r.conditions.get("resurrected_under_read_lock"):
        return _wrong("in this schedule the reader's put is not the last one: let vcpu0 drop "
                      "its reference (SMI) while the reader still holds the root")
    return Check(True, f"{r.steps} steps; the reader's put hit 0 on a valid root under the "
                 "read lock and v6.3 resurrected it (invalid, count 1, zap queued)")


# --- exercise 06.3: write invariant 2 ----------------------------------------------------------
def check_inv2(fn) -> Check:
    """`fn(kvm) -> list[str]`: your check of §5.3 invariant 2 ("no free of a valid root: a
    valid root keeps a reference", v6.4+). It must fire on `broken-free-valid-root` at the
    step the model's checker fires, and never on correct v6.16 runs."""
    from ..sim.engine import Execution
    from .root_scenarios import memslot_update_world, smm_storm_world, vm_destroy_world

    if not callable(fn):
        return _wrong("pass a function that takes the kvm and returns a list of messages")

    def call(kvm):
        out = fn(kvm)
        if out is None:
            return []
        if isinstance(out, str) or not all(isinstance(m, str) for m in out):
            raise TypeError("return a list of strings (empty when the invariant holds)")
        return list(out)

    w = broken_witness("broken-free-valid-root")
    ex = Execution(BROKEN_CASES["broken-free-valid-root"](), 300, check="end")
    caught = None
    try:
        for i, actor in enumerate(w):
            ex.step(actor)
            if call(ex.world.kvm):
                caught = i + 1
                break
    except Exception as exc:  # noqa: BLE001
        return _wrong(f"your function raised {type(exc).__name__}: {exc}")
    if caught is None:
        return _wrong(f"the broken variant freed a valid root at step {len(w)} and your check "
                      "said nothing: look at roots in kvm.arch.tdp_mmu_live")
    if caught < len(w):
        return _wrong(f"your check fired at step {caught}, before anything went wrong: "
                      "a valid root with a reference is fine")
    for build in (lambda: smm_storm_world("v6.16", 1, 2),
                  lambda: memslot_update_world("v6.16", 2, 2),
                  lambda: vm_destroy_world("v6.16", 2, 1),
                  lambda: memslot_update_world("v6.16", 2, 2, td=True)):
        for seed in range(3):
            try:
                world = build()
                e = Execution(world, 300, check="end")
                while not e.terminal():
                    e.step(random.Random(seed * 1000 + len(e.choices)).choice(e.runnable()))
                    msgs = call(world.kvm)
                    if msgs:
                        return _wrong(f"false alarm on a correct v6.16 run at step "
                                      f"{len(e.choices)}: {msgs[0]}")
            except Exception as exc:  # noqa: BLE001
                return _wrong(f"your function raised {type(exc).__name__}: {exc}")
    return Check(True, f"caught broken-free-valid-root at step {caught} (as the model's inv2 "
                 "does), silent on 12 correct v6.16 runs")


# --- solutions (hidden in the notebooks) ----------------------------------------------------
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


def _solution_inv2(kvm):
    roots = list(kvm.arch.tdp_mmu_roots) + list(kvm.arch.tdp_mmu_live.values())
    return [f"inv2: valid {r} has refcount {r.tdp_mmu_root_count}" for r in roots
            if not r.invalid and r.tdp_mmu_root_count <= 0]


SOLUTIONS = {
    "dpamt_bytes_1tib_64g": "round(dpamt_bytes() / MiB, 1)  # "
                            "(42 MiB static + 256 MiB guest pairs + S-EPT/control pairs)",
    "pamt_get": _solution_get,
    "pamt_put": _solution_put,
    "lossy_scenarios": {"pamt-get-put-no-pamt-lock", "pamt-get-put-module-hint"},
    "storm_v63_1000": 2001,
    "resurrection_schedule": None,  # filled below from the explorer's witness
    "inv2": _solution_inv2,
}


def _resurrection_witness() -> list[str]:
    from ..sim import registry

    sc = registry.get("roots-last-put-race-v6.3")
    e = explore(sc.build, name=sc.name, max_steps=sc.max_steps)
    return list(e.verdicts["resurrected_under_read_lock"].witness)


def show_solution(name: str) -> Solution:
    if name not in SOLUTIONS:
        raise KeyError(f"no solution named {name!r}; known: {', '.join(sorted(SOLUTIONS))}")
    sol = SOLUTIONS[name]
    if name == "resurrection_schedule":
        sol = _resurrection_witness()
    if name == "dpamt_bytes_1tib_64g":
        sol = f"{dpamt_bytes() / MiB:.1f} MiB  # " + SOLUTIONS[name].split("# ", 1)[1]
    if name in ("pamt_get", "pamt_put"):
        body = inspect.getsource(_solution_get) + "\n\n" + inspect.getsource(_solution_put)
        return Solution("pamt_get_put", body)
    body = inspect.getsource(sol) if callable(sol) else (
        repr(sorted(sol)) if isinstance(sol, set) else sol if isinstance(sol, str) else repr(sol))
    return Solution(name, body)


__all__ = ["pamt_per_tib_text", "cover_letter_text", "host_example_text", "pamt_memory_curves",
           "POLICY_STORY", "policy_consequences", "policy_consequences_text",
           "gmem_thp_collapse", "PAMT_SCENARIOS", "pamt_race", "pamt_race_text", "dpamt_bytes",
           "check_dpamt_bytes", "PamtLab", "check_pamt_refcounting", "check_lossy_scenarios",
           "root_policy_table", "storm_table", "scenario_verdicts_text", "td_roots_text",
           "broken_variants_text", "BROKEN_CASES", "WHAT_IT_BREAKS", "broken_witness",
           "check_storm_allocations", "check_resurrection_schedule",
           "check_inv2", "SOLUTIONS", "show_solution"]
