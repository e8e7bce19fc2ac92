"""A catalogue of known-bad KVM variants: the model must catch every one.

Each `Mutant` is one small, named change to the KVM side that mirrors a real mistake or a
rejected design, with its source. It is applied without copying model code: either through a
policy knob that already exists (`busy_policy="no-retry"`, `teardown_policy="v19-notifier"`,
a `RootPolicy` variant, `pamt_lock=False`) or through a mutation name checked at exactly one
hook line in `tdxedu/kvm` (grep for ``"mutant"``; `KvmTdx.mutations`).

Hook lines (all in tdxedu/kvm, each marked "mutant"):
  tdx.py       no-vp-flush-on-migration, forget-wait-for-sept-zap, track-no-ipi-wait,
               skip-track, no-wbinvd-after-remove, pamt-put-missing-on-removal
  kvm.py       `kvm_make_all_cpus_request(wait=...)` (used by track-no-ipi-wait)
  teardown.py  no-vp-flush-at-hkid-release, skip-vpflushdone, skip-cache-wb,
               terminate-without-vm-dead, sept-free-before-hkid-release,
               vm-destroy-before-mmu-uninit
  pamt.py      alloc-under-mmu-lock (and the `atomic` might_sleep check it trips)

Families: `removal` (the per-page zap path), `teardown` (HKID release and reclaim order),
`vcpu` (association), `roots` (TDP MMU root refcounts), `pamt` (Dynamic PAMT), and every
other module here with a `MUTANTS` list (`family_modules()`), e.g. `lockdep` (lock-mode
assertions) and `rcu` (lockless walkers and grace periods).
`tdxedu check-mutants` (`tdxedu.mutants.check`) runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mutant:
    """name; what changes; where the mistake comes from (reference section, kernel
    function, mail); the scenario factories (`tdxedu.mutants.scenarios.FACTORIES`) that
    should expose it; the alarm expected to catch it (a condition name, an outcome such as
    ``step_bound``, or ``invariant:<text>`` matched against the first violation); and the
    `Config` fields that make the mutant (policies and/or ``mutations``)."""

    name: str
    description: str
    source: str
    scenarios: tuple[str, ...]
    expected_catch: str
    config: dict = field(default_factory=dict)
    family: str = ""


FAMILIES = ("removal", "teardown", "vcpu", "roots", "pamt")
#: modules of this package that hold no mutants
_NOT_FAMILIES = {"check", "fuzz", "scenarios", "inject"}


def family_modules() -> list[str]:
    """The first five families in their order, then every other module of this package that
    defines `MUTANTS`, by name (a new family is a new file; its `FAMILY` names it, else the
    module name does)."""
    import pkgutil
    from pathlib import Path

    found = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name not in _NOT_FAMILIES and m.name not in FAMILIES
                   and not m.name.startswith("_"))
    return [*FAMILIES, *found]


def catalogue() -> dict[str, Mutant]:
    """Every mutant, by name, in family order."""
    import importlib

    out: dict[str, Mutant] = {}
    for modname in family_modules():
        mod = importlib.import_module(f"{__name__}.{modname}")
        muts = getattr(mod, "MUTANTS", None)
        if muts is None:
            continue
        fam = getattr(mod, "FAMILY", modname)
        for m in muts:
            if m.name in out:
                raise ValueError(f"duplicate mutant name {m.name!r}")
            out[m.name] = Mutant(m.name, m.description, m.source, m.scenarios,
                                 m.expected_catch, m.config, fam)
    return out


def mutations(*names: str) -> dict:
    return {"mutations": frozenset(names)}


__all__ = ["Mutant", "catalogue", "family_modules", "mutations", "FAMILIES"]
