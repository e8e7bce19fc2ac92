"""docs/conformance.md section 5 (KVM's reaction per SEAMCALL site and status) and the flows
stay in step.

For every row and every kernel column, one TD's whole life (build, a runtime fault, a runtime
removal, teardown) runs with the row's status injected at the row's site
(`tdxedu.tdx.fault_inject`), and the reaction the row names is checked: retried, bug flagged
(`kvm->vm_bugged`), warned, page or HKID leaked and reported, error returned. Also: every
status a row names is one the leaf can return per sections 1-4 (the blocks parsed by
tests/tdx/test_conformance_table.py), every leaf KVM issues has rows, and every site has a
harness here. Kernel sources: [K616-TDX] [K619-TDX] [S17] [S20]; series: [V6-06] [TERM-V5].
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tdxedu.kvm.pamt import tdx_topup_pamt_cache, vcpu_pamt_cache
from tdxedu.kvm.tdx import (
    KvmIoctlError,
    tdx_init_mem_region,
    tdx_map_private_gfn,
    tdx_sept_remove_private_spte,
    tdx_td_finalize,
    tdx_td_init,
    tdx_vcpu_create,
    tdx_vcpu_init,
)
from tdxedu.kvm.teardown import tdx_mmu_release_hkid
from tdxedu.scenarios.td import RunningTd
from tdxedu.tdx import status as st
from tdxedu.tdx.fault_inject import inject
from tdxedu.tdx.pamt import KEYID_SHIFT
from tdxedu.trace import MODULE_SOURCE, run_to_completion

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tdx"))
import test_conformance_table as conf  # noqa: E402  (sections 1-4, parsed)

DOC = HERE.parents[1] / "docs" / "conformance.md"
KERNELS = ("v6.16", "v6.19")
TOKENS = {
    "retry-kick",
    "retry-fault",
    "resume",
    "done",
    "ignore",
    "bug",
    "warn",
    "continue",
    "leak-page",
    "leak-hkid",
    "leak-pamt",
    "-EIO",
    "-EBUSY",
    "-EAGAIN",
    "-EINVAL",
    "-ENOMEM",
}
ERRNOS = {"-EIO": 5, "-EBUSY": 16, "-EAGAIN": 11, "-EINVAL": 22}
SERIES = {"Dynamic PAMT v6": "dpamt", "KVM_TDX_TERMINATE_VM v5": "terminate-vm"}

# (site, leaf) -> which calls of the leaf belong to the site ("private" pages, "vcpu" pages,
# "sept" pages, "control" pages; "page"/"tdr" WBINVD), None when the leaf has one site.
SITES = {
    ("__tdx_td_init", "TDH.MNG.CREATE"): None,
    ("tdx_do_tdh_mng_key_config", "TDH.MNG.KEY.CONFIG"): None,
    ("__tdx_td_init", "TDH.MNG.ADDCX"): None,
    ("__tdx_td_init", "TDH.MNG.INIT"): None,
    ("tdx_td_vcpu_init", "TDH.VP.CREATE"): None,
    ("tdx_td_vcpu_init", "TDH.VP.ADDCX"): None,
    ("tdx_td_vcpu_init", "TDH.VP.INIT"): None,
    ("tdx_gmem_post_populate", "TDH.MEM.PAGE.ADD"): None,
    ("tdx_gmem_post_populate", "TDH.MR.EXTEND"): None,
    ("tdx_td_finalize", "TDH.MR.FINALIZE"): None,
    ("tdx_sept_link_private_spt", "TDH.MEM.SEPT.ADD"): "fault",
    ("tdx_mem_page_aug", "TDH.MEM.PAGE.AUG"): None,
    ("tdx_sept_zap_private_spte", "TDH.MEM.RANGE.BLOCK"): None,
    ("tdx_track", "TDH.MEM.TRACK"): None,
    ("tdx_sept_drop_private_spte", "TDH.MEM.PAGE.REMOVE"): None,
    ("tdx_sept_drop_private_spte", "TDH.PHYMEM.PAGE.WBINVD"): "page",
    ("tdx_flush_vp", "TDH.VP.FLUSH"): None,
    ("tdx_mmu_release_hkid", "TDH.MNG.VPFLUSHDONE"): None,
    ("smp_func_do_phymem_cache_wb", "TDH.PHYMEM.CACHE.WB"): None,
    ("tdx_mmu_release_hkid", "TDH.MNG.KEY.FREEID"): None,
    ("tdx_vcpu_free", "TDH.PHYMEM.PAGE.RECLAIM"): "vcpu",
    ("tdx_sept_free_private_spt", "TDH.PHYMEM.PAGE.RECLAIM"): "sept",
    ("tdx_reclaim_td_control_pages", "TDH.PHYMEM.PAGE.RECLAIM"): "control",
    ("tdx_reclaim_td_control_pages", "TDH.PHYMEM.PAGE.WBINVD"): "tdr",
    ("tdx_pamt_get", "TDH.PHYMEM.PAMT.ADD"): None,
    ("tdx_pamt_put", "TDH.PHYMEM.PAMT.REMOVE"): None,
    ("tdx_sept_remove_private_spte", "TDH.PHYMEM.PAGE.RECLAIM"): "private",
}
# What must run after a failed call for "continue".
NEXT = {
    "tdh_mem_track": "tdh_mem_page_remove",
    "tdh_vp_flush": "tdh_mng_vpflushdone",
    "tdh_phymem_cache_wb": "tdh_mng_key_freeid",
}
# Leaves KVM issues that section 5 leaves to "Not followed".
NOT_FOLLOWED = {"tdh_vp_enter"}
# Statuses that report work done (by this call or another CPU's): the leaf runs and only its
# status is replaced (`inject(..., run=True)`), as the module would leave its state.
DID_THE_WORK = {"TDX_NO_HKID_READY_TO_WBCACHE", "TDX_VCPU_NOT_ASSOCIATED"}
# A status the model's module produces by itself when configured so: no injection needed.
GENUINE = {"TDX_INTERRUPTED_RESUMABLE": lambda m: setattr(m, "cache_wb_rounds", 2)}
# After leak-hkid, freeing the S-EPT pages is a KVM_BUG_ON of its own
# (`tdx_sept_free_private_spt`, [K616-TDX]): not the site's reaction.
LATER_BUG = "free a private S-EPT page with the HKID assigned"


@dataclass
class Row:
    n: int
    site: str
    leaf: str  # spelled: TDH.MEM.PAGE.REMOVE
    status: str  # a status cell, or "other"
    columns: dict[str, set[str]] = field(default_factory=dict)  # kernel or series -> tokens

    @property
    def method(self) -> str:
        return "tdh_" + "_".join(self.leaf.lower().split(".")[1:])


def parse_rows(doc: str) -> list[Row]:
    text = doc.split("## 5. ", 1)[1]
    rows = []
    for line in text.splitlines():
        if not re.match(r"^\| \d+ \|", line):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 6, line
        n, site, leaf, status = int(cells[0]), cells[1].strip("`"), cells[2], cells[3]
        if cells[4] in KERNELS or cells[4].split(" [")[0] in SERIES:
            key = SERIES[cells[4].split(" [")[0]]
            cols = {key: _tokens(cells[5])}
        else:
            cols = {"v6.16": _tokens(cells[4]), "v6.19": _tokens(cells[5])}
        rows.append(Row(n, site, leaf, status.strip("`") if status != "other" else status, cols))
    return rows


def _tokens(cell: str) -> set[str]:
    out = {t.strip() for t in cell.split(",")}
    assert out <= TOKENS, f"unknown reaction in {cell!r}: {out - TOKENS}"
    return out


ROWS = parse_rows(DOC.read_text())
BY_SITE: dict[tuple[str, str], list[Row]] = {}
for _r in ROWS:
    BY_SITE.setdefault((_r.site, _r.leaf), []).append(_r)


def _leaf_statuses(leaf: str) -> list[tuple[int, int]]:
    return sorted(conf.BLOCKS[leaf].statuses())


def _named(row: Row) -> tuple[int, int]:
    return conf.parse_status(row.status)


def injected_status(row: Row) -> st.Status:
    """The status to inject: the row's own, with a real operand where it says `any`; for
    `other`, the first status sections 1-4 give the leaf that no named row of the site takes."""
    if row.status != "other":
        code, op = _named(row)
        if op == conf.ANY:
            op = next((o for c, o in _leaf_statuses(row.leaf) if c == code and o > 0), 0)
        return st.Status(code | op)
    taken = {_named(r)[0] for r in BY_SITE[(row.site, row.leaf)] if r.status != "other"}
    for code, op in _leaf_statuses(row.leaf):
        if code not in taken and st.Status(code).is_error:
            return st.Status(code | max(op, 0))
    raise AssertionError(f"row {row.n}: sections 1-4 give {row.leaf} no other error")


# --- one TD's life with a fault armed ---------------------------------------------------------
@dataclass
class Outcome:
    td: RunningTd
    errno: int | None = None  # the ioctl's errno when a build step failed
    memory_error: bool = False
    fault_err: object = None  # what the first runtime fault returned
    refault_ok: bool | None = None
    removed: bool | None = None
    categories: dict = field(default_factory=dict)


def life(
    kernel: str, *, fault=None, teardown: str = "v6.16", dpamt: bool = False, initial: bool = True
) -> Outcome:
    """Build a 2-page TD with one vCPU (page 0 added and measured at build time unless not
    `initial`), fault page 1 in at runtime, remove it again, tear the TD down.
    `fault(module)` arms the fault."""
    td = RunningTd(
        memory=2 * 4096, vcpus=1, initial_pages=0, deferred=True, kernel=kernel, dynamic_pamt=dpamt
    )
    td.build_steps = None
    kvm, host, kt = td.kvm, td.host, td.kt
    out = Outcome(td)
    if fault is not None:
        fault(host.module)
    run = run_to_completion
    try:
        run(tdx_td_init(kvm))
        v = kvm.create_vcpu()
        tdx_vcpu_create(v)
        run(tdx_vcpu_init(v, 0))
        if dpamt:
            tdx_topup_pamt_cache(host, vcpu_pamt_cache(v))
        if initial:
            run(tdx_init_mem_region(kvm, 0, v.cpu))
        run(tdx_td_finalize(kvm))
    except KvmIoctlError as e:
        out.errno = e.errno
        return out
    except MemoryError:
        out.memory_error = True
        return out
    if dpamt:
        tdx_topup_pamt_cache(host, vcpu_pamt_cache(v))
    out.fault_err = run(tdx_map_private_gfn(kvm, 0x1000, v.cpu, v))
    if out.fault_err is not None and out.fault_err.matches(st.TDX_OPERAND_BUSY):
        out.refault_ok = run(tdx_map_private_gfn(kvm, 0x1000, v.cpu, v)) is None
    if 0x1000 in kt.mirror:
        out.removed = run(tdx_sept_remove_private_spte(kvm, 0x1000, 0))
    out.categories = {
        "private": set(kt.mirror.values()),
        "vcpu": {*v.arch.tdx.tdcx_pa, v.arch.tdx.tdvpr_pa},
        "sept": set(kt.sept_pages.values()),
        "control": {*kt.tdcs_pa, kt.tdr_pa},
    }
    td.teardown(teardown)
    return out


def _wbinvd_target(module, e) -> str:
    """A WBINVD of the TDR uses the global KeyID, a private page's its HKID."""
    return "tdr" if e.args[0] >> KEYID_SHIFT == module.global_keyid else "page"


def site_nth(row: Row, kernel: str, teardown: str, dpamt: bool, initial: bool) -> int:
    """Which call of the leaf (counted from the start of the life) is the row's site."""
    kind = SITES[(row.site, row.leaf)]
    if kind is None or kind == "fault":
        return 1
    dry = life(kernel, teardown=teardown, dpamt=dpamt, initial=initial)
    m = dry.td.host.module
    calls = [e for e in dry.td.trace if e.source == MODULE_SOURCE and e.op == row.method]
    for i, e in enumerate(calls, 1):
        if kind in ("page", "tdr"):
            if _wbinvd_target(m, e) == kind:
                return i
        elif e.args[0] in dry.categories[kind]:
            return i
    raise AssertionError(f"row {row.n}: no {row.leaf} call at {row.site} in a TD's life")


def _module_events(td, leaf=None):
    return [e for e in td.trace if e.source == MODULE_SOURCE and (leaf is None or e.op == leaf)]


def check(row: Row, column: str, out: Outcome, status) -> None:
    want = row.columns[column]
    td = out.td
    kvm, kt, host = td.kvm, td.kt, td.host
    where = f"row {row.n} ({row.site}, {row.leaf}, {status}) under {column}"
    warned = bool(kvm.warnings) or bool(host.pamt and host.pamt.warnings)
    bugs = [b for b in kvm.bugs if "leak-hkid" not in want or b != LATER_BUG]
    assert bool(bugs) == ("bug" in want), f"{where}: KVM_BUG_ON {kvm.bugs}"
    assert warned == ("warn" in want), f"{where}: warnings {kvm.warnings}"
    errnos = {ERRNOS[t] for t in want if t in ERRNOS}
    build = out.errno is not None or out.memory_error
    if row.site in ("tdx_sept_link_private_spt", "tdx_mem_page_aug"):
        err = out.fault_err
        if "retry-fault" in want:
            assert err is not None and err.matches(st.TDX_OPERAND_BUSY), f"{where}: {err}"
            assert out.refault_ok, f"{where}: the retried fault failed"
        else:
            assert err is not None and not err.matches(st.TDX_OPERAND_BUSY), f"{where}: {err}"
        return
    assert ("-ENOMEM" in want) == out.memory_error, where
    assert (out.errno if errnos else None) == (next(iter(errnos)) if errnos else None), (
        f"{where}: errno {out.errno}"
    )
    if build:
        return
    events = _module_events(td)
    failed = [i for i, e in enumerate(events) if e.op == row.method and e.status == str(status)]
    assert failed, f"{where}: the injected call never ran"
    after = events[failed[0] + 1 :]
    if "retry-kick" in want:
        i = failed[0]
        kicks = [
            e for e in td.trace if e.op == "kvm_make_all_cpus_request" and events[i].seq < e.seq
        ]
        nxt = next(e for e in after if e.op == row.method)
        assert kicks and kicks[0].seq < nxt.seq, f"{where}: no kick before the retry"
        assert nxt.status == "TDX_SUCCESS", f"{where}: the retry got {nxt.status}"
    if "resume" in want:
        nxt = next(e for e in after if e.op == row.method)
        assert nxt.args == (1,), f"{where}: the next CACHE.WB is not a resume: {nxt}"
    if "continue" in want:
        assert any(e.op == NEXT[row.method] for e in after), f"{where}: the flow stopped"
    assert kt.hkid_assigned == ("leak-hkid" in want), f"{where}: HKID assigned"
    if "leak-hkid" not in want:
        assert bool(kt.leaked) == ("leak-page" in want), f"{where}: leaked {kt.leaked}"
    if "leak-pamt" in want:
        assert host.pamt.pairs_installed() > 0 and sum(host.pamt.pamt_refcounts.values()) > 0
    if want & {"done", "ignore"}:
        assert not kt.leaked and not kt.hkid_assigned and kvm.destroyed, where


CASES = [pytest.param(r, col, id=f"{r.n}-{col}") for r in ROWS for col in r.columns]


@pytest.mark.parametrize("row,column", CASES)
def test_reaction(row, column):
    kernel = column if column in KERNELS else "v6.16"
    teardown = "terminate-vm" if column == "terminate-vm" else "v6.16"
    dpamt = column == "dpamt"
    initial = SITES[(row.site, row.leaf)] != "fault"  # the fault's SEPT.ADD needs no tables
    status = injected_status(row)
    nth = site_nth(row, kernel, teardown, dpamt, initial)

    def arm(m):
        if row.status in GENUINE:
            return GENUINE[row.status](m)
        return inject(m, row.method, status, nth=nth, run=row.status in DID_THE_WORK)

    out = life(kernel, teardown=teardown, dpamt=dpamt, initial=initial, fault=arm)
    check(row, column, out, status)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("leaf", ["tdh_mem_range_block", "tdh_mem_track", "tdh_mem_page_remove"])
def test_busy_twice_is_a_bug(kernel, leaf):
    """The kick-and-retry is exactly once: BUSY on the retry too is a KVM_BUG_ON ([Y4])."""
    busy = st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT
    out = life(kernel, fault=lambda m: inject(m, leaf, busy, times=2))
    assert out.td.kvm.vm_bugged and out.removed is False
    assert out.td.kt.leaked


def test_every_named_status_is_one_the_leaf_can_return():
    for r in ROWS:
        assert r.leaf in conf.BLOCKS, f"row {r.n}: {r.leaf} has no section 1-2 block"
        if r.status == "other":
            continue
        code, op = _named(r)
        listed = conf.BLOCKS[r.leaf].statuses()
        assert any(c == code and (op == conf.ANY or o in (op, conf.ANY)) for c, o in listed), (
            f"row {r.n}: sections 1-4 never give {r.status} for {r.leaf}"
        )


def test_every_site_has_a_harness_and_rows_are_numbered():
    assert [r.n for r in ROWS] == list(range(1, len(ROWS) + 1))
    assert set(BY_SITE) == set(SITES)
    for r in ROWS:
        assert set(r.columns) <= {*KERNELS, *SERIES.values()}


def test_every_leaf_kvm_issues_has_rows():
    """Run each flow (both kernels, every teardown policy, Dynamic PAMT) and compare the leaves
    KVM issued with the leaves section 5 has rows for."""
    issued = set()
    for kernel in KERNELS:
        for teardown in ("v6.16", "terminate-vm", "v19-notifier", "flush-at-vcpu-free"):
            out = life(kernel, teardown=teardown)
            issued |= set(out.td.host.module.counts)
        issued |= set(life(kernel, dpamt=True).td.host.module.counts)
        td = RunningTd(memory=4 * 4096, vcpus=2, kernel=kernel)  # + VP.ENTER, accept
        issued |= set(td.host.module.counts)
    issued -= {"tdg_mem_page_accept", "td_exit"}  # the guest and the CPU, not KVM
    rows = {r.method for r in ROWS}
    assert issued - NOT_FOLLOWED == rows, (issued - NOT_FOLLOWED) ^ rows


def test_upstream_never_reclaims_without_hkid():
    """The "VM is dead, reclaim instead" path belongs to KVM_TDX_TERMINATE_VM only: under an
    upstream policy, removing a private page after the HKID is gone is a KVM_BUG_ON, even on
    a dead VM ([K616-TDX] `tdx_sept_remove_private_spte`; [TERM-V5])."""
    for policy, reclaims in (("v6.16", False), ("terminate-vm", True)):
        td = RunningTd(memory=2 * 4096, vcpus=1)
        td.kt.teardown_policy = policy
        td.kvm.kvm_vm_dead()
        run_to_completion(tdx_mmu_release_hkid(td.kvm))
        assert not td.kt.hkid_assigned
        before = td.host.module.counts.get("tdh_phymem_page_reclaim", 0)
        run_to_completion(tdx_sept_remove_private_spte(td.kvm, 0, 0))
        ran = td.host.module.counts.get("tdh_phymem_page_reclaim", 0) - before
        assert ran == int(reclaims), policy
        assert td.kvm.vm_bugged == (not reclaims), policy


@pytest.mark.parametrize("kernel", KERNELS)
def test_vp_flush_failure_on_migration_is_a_bug(kernel):
    """Row 27 at its other caller: `tdx_vcpu_load` moving a vCPU flushes it on the old pCPU;
    a failed TDH.VP.FLUSH there is `tdx_flush_vp_on_cpu`'s KVM_BUG_ON ([K616-TDX] [S17])."""
    from tdxedu.kvm.tdx import tdx_vcpu_load

    td = RunningTd(memory=2 * 4096, vcpus=1, cpus_per_package=2, kernel=kernel)
    v = td.kvm.vcpus[0]
    with inject(td.host.module, "tdh_vp_flush", st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_RCX):
        run_to_completion(tdx_vcpu_load(v, (v.cpu + 1) % td.host.nr_cpus))
    assert td.kvm.vm_bugged and "TDH.VP.FLUSH failed" in td.kvm.bugs[0]
