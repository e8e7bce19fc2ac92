"""Lesson 05 (Dynamic PAMT): the text summaries its golden cells print, each computed by the
model (`tdxedu.kvm.pamt_memory`, `tdxedu.kvm.pamt`, the explorer).

The exercises are in `dynamic_pamt_exercises`.
"""

from __future__ import annotations

from ..kvm.pamt_memory import (
    MAX_PA_BITS,
    PAMT_PAIR_BYTES,
    GiB,
    MiB,
    TdSpec,
    TiB,
    dpamt_static,
    dpamt_td_bytes,
    host_pamt_bytes,
    refcount_bytes,
    static_pamt,
    v6_cover_letter_table,
)
from ..sim.engine import explore
from .prose import Prose, Reveal, code_block, plural

KiB = 1 << 10


def _fmt(n: int) -> str:
    """Bytes in the largest binary unit that keeps three significant digits."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.3f} {unit}"
    return f"{n} B"


def pamt_per_tib_text() -> str:
    """Static PAMT vs Dynamic PAMT (before any TD) per TiB of TDX memory ([M15-PAMT] entry sizes,
    [V6-02] bitmap)."""
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
    """A 1 TiB host running one 64 GiB TD (our worked example on the rules of [V6-CL])."""
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
    """Kirill's objection to `kvm_arch_gmem_prepare` ([RFC-08]): guest_memfd allocates
    (and, under "gmem-prepare", PAMT-prepares) a page; khugepaged collapses the folio before
    the EPT mapping, so a different pfn gets mapped. Returns the mapping's status and what is
    left after teardown."""
    from ..kvm.pamt import tdx_topup_pamt_cache, thp_collapse, vcpu_pamt_cache
    from ..kvm.tdx import _gmem_alloc, tdx_map_private_gfn
    from ..scenarios.td import RunningTd
    from ..trace import run_to_completion

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


def policy_runs(memory: str = "256K", vcpus: int = 2) -> dict[str, dict]:
    """Each allocation policy on a full TD life: {policy: {error, ok, adds, removes, pairs,
    refs, pooled, gmem (gmem-prepare only: the THP collapse)}}."""
    from ..kvm.pamt import ALLOC_POLICIES
    from ..scenarios.td import RunningTd

    out = {}
    for pol in ALLOC_POLICIES:
        try:
            td = RunningTd(memory, vcpus, dynamic_pamt=True, pamt_policy=pol, trace=False)
        except MemoryError as exc:
            out[pol] = {"error": str(exc)}
            continue
        built = dict(td.host.module.counts)
        r = td.teardown()
        out[pol] = {
            "error": None, "ok": r.ok,
            "adds": built.get("tdh_phymem_pamt_add", 0) + r.counts.get("tdh_phymem_pamt_add", 0),
            "removes": r.counts.get("tdh_phymem_pamt_remove", 0),
            "pairs": r.pamt_pairs, "refs": r.pamt_refcounts,
            "pooled": len(td.host.pamt.sept_kmem_cache),
            "gmem": gmem_thp_collapse(pol) if pol == "gmem-prepare" else None}
    return out


def policy_consequences(memory: str = "256K", vcpus: int = 2, runs=None) -> dict[str, str]:
    """Each allocation policy's consequence on a full TD life (and, for gmem-prepare, a THP
    collapse between allocation and mapping), in one line."""
    out = {}
    for pol, r in (runs or policy_runs(memory, vcpus)).items():
        if r["error"]:
            out[pol] = f"build fails: {r['error']}"
            continue
        line = (f"{'clean' if r['ok'] else 'NOT clean'}: {r['adds']} PAMT.ADD, "
                f"{r['removes']} PAMT.REMOVE; after teardown {r['pairs']} pairs, refcounts "
                f"{r['refs']}")
        if r["pooled"]:
            line += f", {r['pooled']} S-EPT pages pooled with their PAMT (no TD left)"
        if r["gmem"]:
            g = r["gmem"]
            line += (f"; after a THP collapse the mapping gets {g['map']} and "
                     f"{g['refs_left']} reference stays on the old range")
        out[pol] = line
    return out


def policy_consequences_text(memory: str = "256K", vcpus: int = 2, runs=None) -> str:
    lines = [f"a {memory} TD with {vcpus} vCPUs, built and torn down (v6.16 order):"]
    for pol, line in policy_consequences(memory, vcpus, runs).items():
        lines.append(f"  {pol:<16} {line}")
    return "\n".join(lines)


def policies_answer(memory: str = "256K", vcpus: int = 2) -> Reveal:
    """Section 3: each policy's run, and the consequence the reviewers predicted."""
    runs = policy_runs(memory, vcpus)
    k, m, v = runs["kmem-cache-ctor"], runs["module-hint"], runs["vcpu-cache"]
    g = runs["gmem-prepare"]["gmem"]
    return Reveal(
        "Show every policy's run, and how to read it",
        f"{code_block(policy_consequences_text(memory, vcpus, runs))}\n\n"
        "Read each line as the consequence the reviewers predicted:\n\n"
        "* **phys-prepare** never gets a TD built: `KVM_TDX_INIT_MEM_REGION` populates the "
        "initial image with no vCPU pool reaching it (in this model's choice of callers) → "
        "`-ENOMEM` and a `KVM_BUG_ON`. (Try it in the widget: the status line says \"KVM gave "
        "up\".)\n"
        f"* **kmem-cache-ctor** ends with *no TD at all* and still {plural(k['pairs'], 'pair')} "
        f"installed with {plural(k['refs'], 'reference')}: the {k['pooled']} pooled S-EPT "
        "pages. Nothing is lost, but nothing tells you so.\n"
        "* **gmem-prepare** is clean until khugepaged moves the page: the mapped pfn is not the "
        f"prepared one, `TDH.MEM.PAGE.AUG` fails with `{g['map'].split(' |')[0]}`, and the old "
        "reference stays behind.\n"
        f"* **module-hint** is clean on one CPU but makes {m['adds']} PAMT.ADD calls, one for "
        "every page (the `TDX_HPA_RANGE_NOT_FREE` answers mean \"already there\"). Its real "
        "problem needs two CPUs: section 4.\n"
        f"* **vcpu-cache**: {plural(v['adds'], 'ADD')} and {plural(v['removes'], 'REMOVE')}, "
        "one per range. This is what v6 does.")


# --- the concurrent get/put race ---------------------------------------------------------------
PAMT_SCENARIOS = ("pamt-get-put", "pamt-get-put-no-pamt-lock", "pamt-get-put-module-hint")


def pamt_race(names=PAMT_SCENARIOS) -> dict:
    """{scenario: Exploration} for the DPAMT race scenarios."""
    from ..scenarios import registry

    out = {}
    for n in names:
        sc = registry.get(n)
        out[n] = explore(sc.build, name=n, max_steps=sc.max_steps)
    return out


def pamt_race_text(conditions=("pair_lost", "get_failed", "busy", "refcount_nonzero",
                               "pair_leaked"), ex=None) -> str:
    ex = ex or pamt_race()
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


def race_answer() -> Reveal:
    """Section 4: the verdicts of the three designs, the witnesses, and how to read them."""
    ex = pamt_race()
    text = pamt_race_text(ex=ex)
    w = ex[PAMT_SCENARIOS[1]].witness("pair_lost")
    calls = [e for e in w.trace if e.op in ("tdh_phymem_pamt_add", "tdh_phymem_pamt_remove")
             and e.status]
    lossy = [n for n, e in ex.items() if e.verdict("pair_lost") == "sometimes"]
    return Reveal(
        "Show the verdicts and the witnesses",
        f"{code_block(text)}\n\n`pair_lost` is *sometimes* for "
        f"{' and '.join('`' + n + '`' for n in lossy)}. The witness is the race of the v2 "
        f"cover letter, in {plural(len(calls), 'SEAMCALL')}: cpu0 adds the pair; cpu1 tries "
        "too and reads `TDX_HPA_RANGE_NOT_FREE` as \"already there\"; cpu0 finishes and "
        "removes the pair (its count, or the module's hint, says the range is empty); cpu1 now "
        "uses a page with no PAMT_4K behind it. Its `PAGE.AUG` would fail with "
        "`TDX_MISSING_PAMT_PAGE_PAIR`. Fixing it with the module alone would need global "
        "serialisation plus BUSY retry loops; v6's answer is its own refcount under "
        "`pamt_lock`, taken only on 0 → 1 and 1 → 0.")


def _hx(a) -> str:
    return f"{a:#x}" if isinstance(a, int) and not isinstance(a, bool) else str(a)


# --- the answers to the lesson's predictions, generated ------------------------------------
def per_tib_answer() -> Reveal:
    """Section 1: Dynamic PAMT per TiB with no TD running, against static PAMT."""
    s, d = static_pamt(TiB), dpamt_static(TiB)
    return Reveal(
        "Show the answer",
        f"{code_block(pamt_per_tib_text())}\n\nAbout {d.total / MiB:.0f} MiB: "
        f"{s.total / TiB:.1%} of memory becomes {d.total / TiB:.3%}, "
        f"{s.total / d.total:.0f}x less (the series says \"0.4 % → 0.004 %, 100x\", "
        "[RFC-CL], [V4-02]).")


def cover_letter_prose() -> Prose:
    """What to read in the cover letter's table: the ratio with the refcounts kept, and
    what the refcounts cost when `max_pfn` sits at the top of the physical address space."""
    rows = v6_cover_letter_table()
    at_ram = [r["ratio"] for r in rows if not r["max_pfn_at_max_pa"]]
    worst = refcount_bytes(1 << MAX_PA_BITS)
    return Prose(
        "The letter says \"100x / 99x smaller\"; that ratio leaves the refcounts out, the "
        f"model's column keeps them (≈{min(at_ram):.0f}x). The rows with `max_pfn` at max PA "
        "are the worst case: a machine whose `max_pfn` sits at the top of a "
        f"{MAX_PA_BITS}-bit physical address space pays {worst / GiB:.0f} GiB of refcounts, "
        "so Dynamic PAMT *loses* on a small machine with a sparse memory map.")


def host_answer(host: int = TiB, td_memory: int = 64 * GiB, vcpus: int = 8) -> Reveal:
    """Section 1, second prediction: one 4K-mapped TD on a 1 TiB host, and the rule of thumb."""
    spread = dpamt_td_bytes(TdSpec(td_memory, "4k", vcpus, "spread"))
    per_range = 2 * MiB // PAMT_PAIR_BYTES
    return Reveal(
        "Show the answer",
        f"{code_block(host_example_text(host, td_memory, vcpus))}\n\n"
        f"Rule of thumb (our arithmetic from [V6-03]'s two pages per pair): a 2 MiB range "
        f"costs **{PAMT_PAIR_BYTES // KiB} KiB** of PAMT as soon as *one* of its 4 KiB pages "
        f"is given to the module at 4 KiB, so a 4K-mapped TD costs 1/{per_range} of its "
        "memory, exactly what static PAMT cost. Where the S-EPT pages land matters (packed: a "
        f"few pairs; spread, one per range: another {_fmt(spread['sept'])}). With 2 MiB "
        "mappings (the huge-page series) the guest needs no pairs at all: that was Vishal "
        "Annapurve's argument for paying PAMT at fault time, not at allocation time (v2 review "
        "thread, Aug 2025).")


def pamt_life_answer(src, refcount_table) -> Reveal:
    """Section 2: step `src` (a Dynamic PAMT `TdLifeSource`, fresh) through its build, show
    `refcount_table(host)` there, then run it to the end. The first SEAMCALL, the number of
    PAMT.ADDs and the Step at which each range got its pair are read from the run."""
    first = None
    pair_step: dict[int, int] = {}
    while src.phase == "build" and not src.done:
        info = src.step()
        for e in info.events:
            if e.source != "tdx-module":
                continue
            if first is None:
                first = (info.n, e.op, e.args[0] if e.args else None)
            if e.op == "tdh_phymem_pamt_add" and e.status == "TDX_SUCCESS":
                pair_step.setdefault(e.args[0] & ~(2 * MiB - 1), info.n)
    table = refcount_table(src.td.host)
    host = src.td.host
    differ = [idx for idx, n in host.pamt.pamt_refcounts.items()
              if n != host.module.pamt.pages_in_use_4k(idx << 21)]
    same = ("The kernel's refcount and the module's own count of 4K pages in use "
            + ("differ here" if differ else "agree at the end of the build")
            + ": the kernel counts references it *took*, including pages it is about to hand "
            "over; the module counts only pages already assigned, so they differ only while "
            "a mapping is under way.")
    src.run_to_end()
    counts = src.td.host.module.counts
    adds, removes = counts.get("tdh_phymem_pamt_add", 0), counts.get("tdh_phymem_pamt_remove", 0)
    ranges = ", ".join(f"`{pa:#x}` at Step {n}" for pa, n in sorted(pair_step.items()))
    return Reveal(
        "Show the answer, and the life as text",
        f"The very first SEAMCALL (Step {first[0]}) is `{first[1]}` for range "
        f"`{first[2]:#x}`: the TDR page needs a pair before `TDH.MNG.CREATE`. The whole life "
        f"takes {plural(adds, 'PAMT.ADD')} and {plural(removes, 'PAMT.REMOVE')}, one per 2 MiB "
        f"range the TD touches. The ranges got their pairs at: {ranges}; the second only when "
        "the guest's memory spills into it, and each loses its pair as soon as its last page "
        "is reclaimed in the teardown. The kernel's refcounts at the end of the build, then "
        f"the whole life (checked by the tests):\n\n{code_block(table)}\n\n"
        f"{code_block(src.summary())}\n\n{same} The pair of range `0x0` lives *in* range "
        "`0x0` itself: PAMT pages are ordinary host pages.")


__all__ = ["per_tib_answer", "cover_letter_prose", "host_answer", "pamt_life_answer",
           "policy_runs", "policies_answer", "race_answer", "pamt_per_tib_text",
           "cover_letter_text", "host_example_text", "pamt_memory_curves", "POLICY_STORY",
           "policy_consequences", "policy_consequences_text", "gmem_thp_collapse",
           "PAMT_SCENARIOS", "pamt_race", "pamt_race_text"]
