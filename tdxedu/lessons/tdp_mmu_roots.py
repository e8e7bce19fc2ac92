"""Lesson 06 (TDP MMU roots): the text summaries its golden cells print, each computed by the
model (`tdxedu.scenarios.roots`, `tdxedu.kvm.mmu_role`, the explorer), and the broken variants
with the shortest schedule after which the TDP MMU invariant checker fires
(`tdxedu.kvm.tdp_mmu_invariants`).

The exercises are in `tdp_mmu_roots_exercises`.
"""

from __future__ import annotations

from ..scenarios.roots import (
    last_put_race_world,
    memslot_update_world,
    smm_storm_world,
)
from ..sim.engine import explore


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
    from ..scenarios.roots import smm_storm

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
    from ..scenarios import registry

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
    from ..scenarios.roots import memslot_update_world, vm_destroy_world
    from ..sim.engine import run_seeded

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
                              "on v6.3 counting (new roots start at 1)",
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


__all__ = ["root_policy_table", "storm_table", "scenario_verdicts_text", "td_roots_text",
           "broken_variants_text", "BROKEN_CASES", "WHAT_IT_BREAKS", "broken_witness"]
