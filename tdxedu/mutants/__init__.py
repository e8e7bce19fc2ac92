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
`vcpu` (association), `roots` (TDP MMU root refcounts), `pamt` (Dynamic PAMT), and any
other module of this package that defines ``MUTANTS`` (its family is the module's ``FAMILY``
or its name). Scenario factories may live in any ``scenarios_<topic>.py`` module here: it
registers them with `tdxedu.mutants.scenarios.factory` and is imported with that module.
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
NOT_CATALOGUE = ("check", "fuzz", "scenarios")


def catalogue_modules() -> list[str]:
    """The modules that hold mutants: `FAMILIES` first, then every other module of this
    package (not ``scenarios_*``, not `NOT_CATALOGUE`) by name."""
    import pkgutil

    others = sorted(m.name for m in pkgutil.iter_modules(__path__)
                    if m.name not in FAMILIES and m.name not in NOT_CATALOGUE
                    and not m.name.startswith("scenarios_"))
    return [*FAMILIES, *others]


def catalogue() -> dict[str, Mutant]:
    """Every mutant, by name, in family order."""
    import importlib

    out: dict[str, Mutant] = {}
    for name in catalogue_modules():
        mod = importlib.import_module(f"{__name__}.{name}")
        fam = getattr(mod, "FAMILY", name)
        for m in getattr(mod, "MUTANTS", ()):
            if m.name in out:
                raise ValueError(f"duplicate mutant name {m.name!r}")
            out[m.name] = Mutant(m.name, m.description, m.source, m.scenarios,
                                 m.expected_catch, m.config, m.family or fam)
    return out


def mutations(*names: str) -> dict:
    return {"mutations": frozenset(names)}


__all__ = ["Mutant", "catalogue", "catalogue_modules", "mutations", "FAMILIES"]
