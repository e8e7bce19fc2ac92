"""Lesson 05 (Dynamic PAMT): the text summaries its golden cells print, each computed by the
model (`tdxedu.kvm.pamt_memory`, `tdxedu.kvm.pamt`, the explorer).

The exercises are in `dynamic_pamt_exercises`.
"""

from __future__ import annotations

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


def policy_consequences(memory: str = "256K", vcpus: int = 2) -> dict[str, str]:
    """Each allocation policy's consequence on a full TD life (and, for gmem-prepare, a THP
    collapse between allocation and mapping), in one line."""
    from ..kvm.pamt import ALLOC_POLICIES
    from ..scenarios.td import RunningTd

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
    from ..scenarios import registry

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


__all__ = ["pamt_per_tib_text", "cover_letter_text", "host_example_text", "pamt_memory_curves",
           "POLICY_STORY", "policy_consequences", "policy_consequences_text",
           "gmem_thp_collapse", "PAMT_SCENARIOS", "pamt_race", "pamt_race_text"]
