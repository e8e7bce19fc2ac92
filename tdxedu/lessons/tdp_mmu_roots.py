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
from .prose import Prose, Reveal, code_block, plural


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


# --- the answers to the lesson's predictions, generated ------------------------------------
def direct_roles() -> list:
    """Every direct (non-mirror) TDP root role the model's role type accepts."""
    from ..kvm.mmu_role import KvmMmuPageRole

    out = []
    for level in (4, 5):
        for guest_mode in (False, True):
            for smm in (False, True):
                try:
                    out.append(KvmMmuPageRole(level=level, smm=smm, guest_mode=guest_mode))
                except ValueError:  # no root is both SMM and guest mode ([SC-preserve])
                    pass
    return out


def direct_roles_prose() -> Prose:
    """How many direct roles there are, listed from the model's role type."""
    roles = direct_roles()
    return Prose(
        f"At most **{len(roles)} direct roles** exist, so at most {len(roles)} valid direct "
        "roots: paging level 4 or 5, times SMM or not outside guest mode, plus 4 or 5 levels in "
        "guest mode, which is never SMM (the commit message of the fix, [SC-preserve]): "
        + ", ".join(f"`{r}`" for r in roles) + ". A TD adds one mirror root (section 4).")


def _roots_steps(policy: str, scenario: str = "smm-storm"):
    """Step `roots_source(scenario, policy)`: [(Step, allocated, freed, SMI/RSM or None)]."""
    from ..steps import roots_source

    src = roots_source(scenario, policy)
    rows = []
    while not src.done:
        info = src.step()
        st = src.kvm.arch.tdp_mmu_stats
        smm = next((str(e.args[-1]) for e in info.events if e.op == "kvm_smm_changed"), None)
        rows.append((info.n, st["roots_allocated"], st["roots_freed"], smm))
    return rows


def _changes(rows, col):
    """The Steps at which column `col` (1: allocated, 2: freed) grew."""
    out, last = [], 0
    for r in rows:
        if r[col] > last:
            out.append(r[0])
            last = r[col]
    return out


def smm_first_step(policy: str = "v6.3") -> int:
    """The Step of the SMM-storm widget that allocates the first root."""
    return _changes(_roots_steps(policy), 1)[0]


def smm_answer(policies=("v6.3", "v6.4")) -> Reveal:
    """Section 1: what the SMI does to the root under each policy, Step by Step, and the
    explorer's verdicts over every interleaving."""
    parts = []
    for pol in policies:
        rows = _roots_steps(pol)
        smi = next(r[0] for r in rows if r[3] == "SMI")
        rsm = next(r[0] for r in rows if r[3] == "RSM")
        alloc, freed = _changes(rows, 1), _changes(rows, 2)
        text = (f"**{pol}**: the SMI is Step {smi}, the RSM Step {rsm}; roots are allocated at "
                f"Steps {', '.join(map(str, alloc))} ({plural(len(alloc), 'allocation')})")
        text += (f" and freed at Steps {', '.join(map(str, freed))}." if freed
                 else "; none is ever freed.")
        parts.append(text)
    verdicts = scenario_verdicts_text(
        [f"roots-smm-storm-{p}" for p in ("v6.3", "v6.4", "v6.6", "v6.16")],
        ("root_freed", "root_reallocated", "kvm_bug"))
    return Reveal(
        "Show the answer",
        "Under v6.3 the SMI unloads the vCPU's MMU and puts its only reference: the last put "
        "marks the root invalid, sets the count back to 1 and gifts that reference to the zap "
        "worker (v6.3's \"resurrection\"); the kworker zaps it and RCU frees it, and the RSM "
        "has to allocate the non-SMM root again. Under v6.4 the TDP MMU's own reference (the "
        "`tdp_mmu` bar) keeps both roots alive.\n\n" + "\n\n".join(parts)
        + "\n\nThe explorer agrees over *every* interleaving (`root_reallocated`: a role "
        f"allocated again after its root died):\n\n{code_block(verdicts)}")


def storm_answer(ns=(0, 1, 2, 5, 10, 20, 50), big: int = 50_000) -> Reveal:
    """Section 2: the storm table, the slope and the plateau read from it."""
    from ..scenarios.roots import smm_storm

    a0, a1 = (smm_storm("v6.3", n, 1)["root_allocations"] for n in (ns[-2], ns[-1]))
    slope = (a1 - a0) // (ns[-1] - ns[-2])
    base = smm_storm("v6.3", 0, 1)["root_allocations"]
    flat = smm_storm("v6.4", ns[-1], 1)["root_allocations"]
    return Reveal(
        "Show the table and the slope",
        f"{code_block(storm_table(ns))}\n\n"
        f"v6.3 pays **{slope} root allocations per round trip** (the SMM root at SMI, the normal "
        "root again at RSM), plus a rebuild of every page-table page behind them (the "
        "right-hand column): linear in N, and SeaBIOS makes N large. From v6.4 the TDP MMU's "
        f"reference keeps both roles' roots alive: **{flat}**, whatever N. Extrapolated, "
        f"{big:,} round trips are {base + slope * big:,} allocations against {flat}; Sean "
        "measured a whole (hacked) boot: \"15 with the patch vs 100k without\".")


def memslot_answer() -> Reveal:
    """Section 3: are invalidated roots gone when the memslot update returns?"""
    names = [f"roots-memslot-update-{p}" for p in ("v6.3", "v6.4", "v6.6", "v6.16")]
    text = scenario_verdicts_text(names, ("invalid_root_outlived_fast_zap",
                                          "fast_zap_left_sptes", "kvm_bug"))
    return Reveal(
        "Show the answer",
        f"{code_block(text)}\n\nNot always gone: the ASYNC-RM commit (v6.6) says it, "
        "\"invalid roots can outlive a memslot update\". They must be *zapped* before the "
        "update completes (`fast_zap_left_sptes` is *never*: otherwise mmu_notifiers could not "
        "reach SPTEs of a deleted memslot), but a vCPU that has not yet serviced its request "
        "still holds a reference to an empty, invalid root.")


def td_roots_answer(seed: int = 0) -> Reveal:
    """Section 4: the mirror root's references after a memslot deletion, from the run."""
    from ..scenarios.roots import memslot_update_world
    from ..sim.engine import run_seeded

    holder = {}

    def build():
        holder["w"] = memslot_update_world("v6.16", 2, 2, td=True)
        return holder["w"]

    run_seeded(build, seed, max_steps=300)
    kvm = holder["w"].kvm
    roots = {id(x): x for x in list(kvm.arch.tdp_mmu_roots)
             + list(kvm.arch.tdp_mmu_live.values())}.values()
    mirror = next(r for r in roots if r.role.is_mirror)
    holders = [h for h, n in sorted(mirror.refs.items()) if n]
    verdicts = scenario_verdicts_text(["roots-memslot-update-td-v6.16",
                                       "roots-vm-destroy-td-v6.16"],
                                      ("root_freed", "all_roots_freed", "tdp_mmu_pages_zero"))
    return Reveal(
        "Show the answer",
        f"{code_block(td_roots_text(seed))}\n\n"
        f"The mirror root holds **{plural(mirror.tdp_mmu_root_count, 'reference')}**: "
        + ", ".join(f"`{h}`" for h in holders)
        + " (the TDP MMU's, and one per vCPU's `mirror_root_hpa`). Nothing was invalidated, "
        "and destruction frees both roots. The explorer confirms it over every interleaving:"
        f"\n\n{code_block(verdicts)}")


def broken_answer(source, variant: str = "broken-free-valid-root") -> Reveal:
    """Section 5: step `source` (the replay of `variant`'s witness, as the broken-roots widget
    steps it) to the Step where the invariant checker fires; then every variant's catch."""
    step = None
    while not source.done:
        info = source.step()
        if "invariant violated" in (info.note or ""):
            step = info
            break
    if step is None:
        raise LookupError(f"{variant}: the checker never fired in the replay")
    rule = step.note.split("invariant violated: ", 1)[1].split(":", 1)[0]
    return Reveal(
        "Show the answer, and every broken variant",
        f"At Step {step.n} (`{step.actor}`) the status line turns to \"invariant violated: "
        f"{rule}: ...\": the SMI's unload puts the vCPU's only reference and frees a root that "
        "is still valid. Every broken policy, the invariant it breaks, and where the explorer's "
        "shortest run catches it (counted in scheduler steps, not widget Steps):\n\n"
        f"{code_block(broken_variants_text())}")


__all__ = ["direct_roles", "direct_roles_prose", "smm_first_step", "smm_answer", "storm_answer",
           "memslot_answer", "td_roots_answer", "broken_answer", "root_policy_table",
           "storm_table", "scenario_verdicts_text", "td_roots_text", "broken_variants_text",
           "BROKEN_CASES", "WHAT_IT_BREAKS", "broken_witness"]
