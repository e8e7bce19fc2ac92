"""Helpers that put the step engine's and the bulk engine's state side by side."""

from __future__ import annotations

from collections import Counter

from tdxedu.cost.bulk import BulkTd
from tdxedu.scenarios import RunningTd
from tdxedu.tdx.pamt import PageType


def make_stale(td: RunningTd, k: int) -> None:
    """Fault injection mirrored by `BulkTd(stale_vcpus=k)`: KVM forgets that the first k
    vCPUs are associated (vcpu->cpu = -1, off the CPU's list); the module still counts them."""
    for v in td.kvm.vcpus[:k]:
        td.host.associated_tdvcpus[v.cpu].remove(v)
        v.cpu = -1


def pamt_state(td: RunningTd) -> dict[int, tuple[int, int]]:
    """pfn -> (page type, owner PA) for every PAMT entry the step engine created."""
    return {pfn: (int(e.pt), e.owner) for pfn, e in td.host.module.pamt.entries.items()}


def bulk_pamt_matches(bulk: BulkTd, step: dict[int, tuple[int, int]]) -> list[str]:
    bad = []
    for pfn, (pt, owner) in step.items():
        bpt = int(bulk.pamt_pt[pfn]) if pfn < bulk.end_pfn else 0
        if (bpt, bulk.pamt_owner(pfn)) != (pt, owner):
            bad.append(f"pfn {pfn}: step {(PageType(pt).name, owner)} bulk "
                       f"{(PageType(bpt).name, bulk.pamt_owner(pfn))}")
    # Every page the bulk engine says is assigned must exist in the step engine's PAMT.
    assigned = set(map(int, (bulk.pamt_pt != 0).nonzero()[0]))
    step_assigned = {p for p, (pt, _) in step.items() if pt != 0}
    if assigned != step_assigned:
        bad.append(f"assigned pages differ: only bulk {sorted(assigned - step_assigned)[:5]}, "
                   f"only step {sorted(step_assigned - assigned)[:5]}")
    return bad


def sept_state(td: RunningTd) -> dict[tuple[int, int], int] | None:
    """(level, GPA) -> SeptState of every non-FREE S-EPT entry; None once the TD is gone."""
    m = td.host.module
    t = m.tds.get(td.kt.tdr_pa) if td.kt.tdr_pa else next(iter(m.tds.values()), None)
    if t is None:
        return None
    return {k: int(e.state) for k, e in t.tdcs.sept.entries.items() if int(e.state) != 0}


def bulk_sept_state(bulk: BulkTd) -> dict[tuple[int, int], int] | None:
    if not bulk.td_alive:
        return None
    out = {(0, int(i) << 12): int(bulk.leaf[i]) for i in bulk.leaf.nonzero()[0]}
    for level in (1, 2, 3):
        st = bulk.tables[level]
        for gpa, s in zip(bulk.table_gpas(level), st, strict=True):
            if s:
                out[(level, int(gpa))] = int(s)
    # The root level (3) entries live in the TDCS root page; our level-3 tables are the
    # level-3 *entries* pointing at them, as in the module's map.
    return out


def module_td_summary(td: RunningTd):
    m = td.host.module
    return [(t.lifecycle.name, t.chldcnt) for t in m.tds.values()]


def bulk_td_summary(bulk: BulkTd):
    return [(bulk.lifecycle, bulk.chldcnt)] if bulk.td_alive else []


def compare_all(step_td: RunningTd, step_report, bulk: BulkTd, bulk_report) -> list[str]:
    """Every observable the two engines must agree on; an empty list means exact agreement."""
    bad = []
    if step_report.counts != bulk_report.counts:
        bad.append(f"counts: step {step_report.counts} bulk {bulk_report.counts}")
    if step_report.leaked_pages != bulk_report.leaked_pages():
        bad.append(f"leaks: step {len(step_report.leaked_pages)} bulk {bulk_report.n_leaked}")
    if Counter(step_report.bugs) != bulk_report.bugs:
        bad.append(f"bugs: step {Counter(step_report.bugs)} bulk {bulk_report.bugs}")
    for name in ("hkid_state", "host_pages_in_use", "cleared_pages"):
        if getattr(step_report, name) != getattr(bulk_report, name):
            bad.append(f"{name}: step {getattr(step_report, name)} "
                       f"bulk {getattr(bulk_report, name)}")
    bad += bulk_pamt_matches(bulk, pamt_state(step_td))
    if sept_state(step_td) != bulk_sept_state(bulk):
        bad.append("S-EPT state differs")
    if module_td_summary(step_td) != bulk_td_summary(bulk):
        bad.append(f"TD: step {module_td_summary(step_td)} bulk {bulk_td_summary(bulk)}")
    return bad
