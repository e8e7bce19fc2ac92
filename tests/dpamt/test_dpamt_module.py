"""TDX module side of Dynamic PAMT: TDH.PHYMEM.PAMT.ADD/REMOVE (leaves 58/59) and their
errors, MISSING_PAMT_PAGE_PAIR for pages handed to a TD, and 2M leaves with DEMOTE/PROMOTE.
Sources: [V6-03], [V2-CL], [V3-CL], [SEAN-V5-29]; module 2.0 `tdh_phymem_pamt_add.c`,
`tdh_phymem_pamt_remove.c`, `helpers.c` (non_shared_hpa_metadata_check_and_lock)."""

from __future__ import annotations

import pytest

from tdxedu.tdx import Leaf, PageType, TdxModule
from tdxedu.tdx import status as st
from tdxedu.tdx.sept import SeptState
from tdxedu.tdx.testing import TdBuilder

M2 = 2 << 20
RCX, RDX, R8 = st.TDX_OPERAND_ID_RCX, st.TDX_OPERAND_ID_RDX, st.TDX_OPERAND_ID_R8
OK = st.TDX_SUCCESS


def dpamt(**kw) -> TdxModule:
    return TdxModule(memory=16 << 20, dynamic_pamt=True, **kw)


def covered_td(m: TdxModule, *, huge: bool = False):
    """A finalized TD whose pages live in range 0 (covered by a pair from range 7)."""
    assert m.tdh_phymem_pamt_add(0, 7 * M2, 7 * M2 + 4096).status == OK
    return TdBuilder(m).build("finalized", vcpus=1, pages=2)


def test_static_module_rejects_pamt_leaves():
    """[M20-PAMT-ADD]: PAMT.ADD/REMOVE while DPAMT is not enabled -> OPERAND_INVALID (| RAX)."""
    m = TdxModule()
    assert m.tdh_phymem_pamt_add(0, M2, M2 + 4096).status == st.TDX_OPERAND_INVALID
    assert m.tdh_phymem_pamt_remove(0).status == st.TDX_OPERAND_INVALID
    assert m.seamcall(Leaf.TDH_PHYMEM_PAMT_REMOVE, 0 | 1).status == st.TDX_OPERAND_INVALID


def test_add_then_remove_returns_the_pair():
    """[M20-PAMT-ADD]: ADD turns the PAMT_2M entry into a PT_PAMT node and sets the bitmap bits;
    REMOVE hands the pages back in RDX/R8 and returns the entry to PT_NDA."""
    m = dpamt()
    p0, p1 = 3 * M2, 5 * M2 + 4096  # need not be contiguous
    assert m.tdh_phymem_pamt_add(M2, p0, p1).status == OK
    assert m.pamt.range_pt(M2) == PageType.PT_PAMT
    assert m.pamt.pamt_pages == {p0 >> 12, p1 >> 12}
    r = m.tdh_phymem_pamt_remove(M2)
    assert r.status == OK and (r.rdx, r.r8) == (p0, p1)
    assert m.pamt.range_pt(M2) == PageType.PT_NDA and not m.pamt.pamt_pages
    assert m.check_invariants() == []


def test_register_level_leaves_58_59():
    """[V6-03] register use: RCX = HPA | 1 (2M level), RDX/R8 = pages; outputs RDX/R8."""
    m = dpamt()
    assert m.seamcall(58, M2 | 1, 3 * M2, 3 * M2 + 4096).status == OK
    assert m.seamcall(58, M2 | 0, 4 * M2, 4 * M2 + 4096).status == st.TDX_OPERAND_INVALID | RCX
    assert m.seamcall(58, M2 | 1 | 0x8, 4 * M2, 4 * M2 + 4096).status == \
        st.TDX_OPERAND_INVALID | RCX  # reserved bits 11:3
    r = m.seamcall(59, M2 | 1)
    assert r.status == OK and (r.rdx, r.r8) == (3 * M2, 3 * M2 + 4096)
    assert m.counts["tdh_phymem_pamt_add"] == 3 and m.counts["tdh_phymem_pamt_remove"] == 1


@pytest.mark.parametrize("args, status", [
    ((M2 + 4096, 3 * M2, 3 * M2 + 4096), st.TDX_OPERAND_INVALID | RCX),  # not 2M aligned
    ((M2 | 33 << 46, 3 * M2, 3 * M2 + 4096), st.TDX_OPERAND_INVALID | RCX),  # KeyID bits
    ((M2, 3 * M2 + 8, 3 * M2 + 4096), st.TDX_OPERAND_INVALID | RDX),
    ((M2, 3 * M2, 3 * M2 + 4096 | 33 << 46), st.TDX_OPERAND_INVALID | R8),
    ((M2, 1 << 40, 3 * M2), st.TDX_OPERAND_ADDR_RANGE_ERROR | RDX),
    ((M2, 3 * M2, 1 << 40), st.TDX_OPERAND_ADDR_RANGE_ERROR | R8),
    ((1 << 40, 3 * M2, 3 * M2 + 4096), st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX),
    ((M2, 3 * M2, 3 * M2), st.TDX_PAGE_NOT_FREE | R8),  # the same page twice (bitmap)
], ids=["unaligned", "keyid", "page0-unaligned", "page1-keyid", "page0-outside",
        "page1-outside", "range-outside", "same-page-twice"])
def test_add_operand_errors(args, status):
    m = dpamt()
    assert m.tdh_phymem_pamt_add(*args).status == status
    assert m.pamt.range_pt(M2) == PageType.PT_NDA and not m.pamt.pamt_pages


def test_add_range_not_free_and_page_not_free():
    """[M20-PAMT-ADD] ADD: a range that already has a pair -> HPA_RANGE_NOT_FREE; a page that is
    already
    a PAMT page, or a TD page -> PAGE_NOT_FREE (operand = its register)."""
    m = dpamt()
    assert m.tdh_phymem_pamt_add(M2, 3 * M2, 3 * M2 + 4096).status == OK
    assert m.tdh_phymem_pamt_add(M2, 4 * M2, 4 * M2 + 4096).status == \
        st.TDX_HPA_RANGE_NOT_FREE | RCX
    assert m.tdh_phymem_pamt_add(2 * M2, 3 * M2, 4 * M2).status == st.TDX_PAGE_NOT_FREE | RDX
    assert m.tdh_phymem_pamt_add(2 * M2, 4 * M2, 3 * M2 + 4096).status == \
        st.TDX_PAGE_NOT_FREE | R8
    assert 4 * M2 >> 12 not in m.pamt.pamt_pages  # page 0's bit undone on page 1's failure
    td = covered_td(m)
    assert m.tdh_phymem_pamt_add(2 * M2, td.tdr, 4 * M2).status == st.TDX_PAGE_NOT_FREE | RDX


def test_remove_errors():
    """[M20-PAMT-REMOVE] REMOVE: no pair -> NO_PAMT_PAGE_PAIR; a 4K page still in use ->
    PAMT_PAGE_NOT_EMPTY
    with the index of the PAMT page that holds its entry (module: operand id i)."""
    m = dpamt()
    assert m.tdh_phymem_pamt_remove(M2).status == st.TDX_NO_PAMT_PAGE_PAIR | RCX
    td = covered_td(m)
    r = m.tdh_phymem_pamt_remove(0)
    assert r.status.code == st.TDX_PAMT_PAGE_NOT_EMPTY
    assert r.status.operand_id == (td.tdr >> 12 & 511) // 256
    assert m.pamt.range_pt(0) == PageType.PT_PAMT  # nothing changed


def test_missing_pamt_page_pair_for_every_give_page_leaf():
    """[V2-CL], [RFC-01]: pages handed to a TD in a range with no pair -> MISSING_PAMT_PAGE_PAIR |
    operand
    (module 2.0 helpers.c: the PAMT walk stops at a PT_NDA PAMT_2M entry): MNG.CREATE (RCX),
    PAGE.AUG (R8), SEPT.ADD (R8)."""
    m = dpamt()
    assert m.tdh_mng_create(M2, 33).status == st.TDX_MISSING_PAMT_PAGE_PAIR | RCX
    td = covered_td(m)
    bare = 2 * M2  # no pair here
    vp = td.vcpus[0]
    assert m.tdh_mem_page_aug(td.tdr, 0x40_0000, 0, bare).status in (
        st.TDX_MISSING_PAMT_PAGE_PAIR | R8, st.TDX_EPT_WALK_FAILED | RCX)
    gpa = next(g for g in range(0, 1 << 21, 4096) if g not in td.private)
    assert m.tdh_mem_page_aug(td.tdr, gpa, 0, bare).status == \
        st.TDX_MISSING_PAMT_PAGE_PAIR | R8
    assert m.tdh_mem_sept_add(td.tdr, 1 << 30, 2, bare).status == \
        st.TDX_MISSING_PAMT_PAGE_PAIR | R8
    del vp
    # after PAMT.ADD the same page is accepted
    assert m.tdh_phymem_pamt_add(bare, 6 * M2, 6 * M2 + 4096).status == OK
    assert m.tdh_mem_page_aug(td.tdr, gpa, 0, bare).status == OK
    # and a PAMT page itself can never be given to a TD
    assert m.tdh_mem_page_aug(td.tdr, gpa + 4096, 0, 7 * M2).status.code in (
        st.TDX_PAGE_METADATA_INCORRECT, st.TDX_MISSING_PAMT_PAGE_PAIR)
    assert m.check_invariants() == []


def test_two_cpus_on_one_range_one_gets_busy():
    """[V3-CL]: PAMT.ADD/REMOVE lock the PAMT_2M entry exclusively, so two simultaneous
    calls on one 2 MB range cause one TDX_OPERAND_BUSY."""
    m = dpamt()
    a = m.stepwise("tdh_phymem_pamt_add", M2, 3 * M2, 3 * M2 + 4096, lp=0)
    next(a)  # inside the SEAMCALL, the 2M entry held exclusively
    b = m.tdh_phymem_pamt_add(M2, 4 * M2, 4 * M2 + 4096, lp=1)
    assert b.status == st.TDX_OPERAND_BUSY | RCX
    assert m.tdh_phymem_pamt_remove(M2, lp=2).status == st.TDX_OPERAND_BUSY | RCX
    with pytest.raises(StopIteration) as done:
        next(a)
    assert done.value.value.status == OK
    rm = m.stepwise("tdh_phymem_pamt_remove", M2, lp=1)
    next(rm)
    assert m.tdh_phymem_pamt_add(M2, 4 * M2, 4 * M2 + 4096, lp=0).status == \
        st.TDX_OPERAND_BUSY | RCX


def test_removal_hint_when_range_becomes_empty():
    """[V2-CL], [M20]: PAGE.REMOVE / RECLAIM say "can remove" (PAMT_REMOVAL_HINT) when the count of
    4K
    pages in use in the range reaches 0."""
    m = dpamt()
    td = covered_td(m)
    assert m.tdh_phymem_pamt_add(2 * M2, 6 * M2, 6 * M2 + 4096).status == OK
    gpa = next(g for g in range(0, 1 << 21, 4096) if g not in td.private)
    assert m.tdh_mem_page_aug(td.tdr, gpa, 0, 2 * M2).status == OK
    r = m.tdh_mem_page_remove(td.tdr, gpa, 0)  # the TD is runnable: block + track first
    assert r.status.code == st.TDX_GPA_RANGE_NOT_BLOCKED
    assert m.tdh_mem_range_block(td.tdr, gpa, 0).status == OK
    assert m.tdh_mem_track(td.tdr).status == OK
    r = m.tdh_mem_page_remove(td.tdr, gpa, 0)
    assert r.status == OK and r.pamt_removal_hint
    assert m.tdh_phymem_pamt_remove(2 * M2).status == OK


def test_2m_leaf_needs_no_pair_split_needs_one_merge_returns_it():
    """[SEAN-V5-29], [V2-CL]: a 2 MB mapping uses the PAMT_2M leaf (no pair); DEMOTE needs a pair,
    PROMOTE
    returns it ([V2-CL])."""
    m = dpamt(huge_pages=True)
    td = covered_td(m)
    gpa, hpa = 1 << 21, 4 * M2  # the TD has S-EPT tables for GPA range [0, 1G)
    adds = m.counts["tdh_phymem_pamt_add"]
    assert m.tdh_mem_page_aug(td.tdr, gpa, 1, hpa).status == OK
    assert m.counts["tdh_phymem_pamt_add"] == adds and m.pamt.range_pt(hpa) == PageType.PT_REG
    assert m.tdh_mem_page_aug(td.tdr, gpa + M2, 1, 5 * M2 + 4096).status == \
        st.TDX_OPERAND_INVALID | R8  # not 2M aligned
    assert m.check_invariants() == []
    assert m.tdh_mem_range_block(td.tdr, gpa, 1).status == OK
    assert m.tdh_mem_track(td.tdr).status == OK
    sept = 0x10_0000 + 0x8_0000  # a page in covered range 0
    assert m.pamt.page_type(sept) == PageType.PT_NDA
    bad = m.tdh_mem_page_demote(td.tdr, gpa, 1, sept, 6 * M2, 6 * M2)
    assert bad.status.code == st.TDX_PAGE_NOT_FREE  # the pair must be two free pages
    r = m.tdh_mem_page_demote(td.tdr, gpa, 1, sept, 6 * M2, 6 * M2 + 4096)
    assert r.status == OK
    assert m.pamt.range_pt(hpa) == PageType.PT_PAMT
    assert m.pamt.range_entry(hpa).pages == (6 * M2, 6 * M2 + 4096)
    assert m.pamt.pages_in_use_4k(hpa) == 512
    assert m.td(td.tdr).tdcs.sept.walk(gpa, 0).state == SeptState.PENDING  # AUGed, unblocked
    assert m.check_invariants() == []
    # merge back: block the table, track, promote: the pair comes back in RDX/R8
    assert m.tdh_mem_range_block(td.tdr, gpa, 1).status == OK
    assert m.tdh_mem_track(td.tdr).status == OK
    r = m.tdh_mem_page_promote(td.tdr, gpa, 1)
    assert r.status == OK and (r.rdx, r.r8) == (6 * M2, 6 * M2 + 4096) and r.rcx == sept
    assert r.pamt_removal_hint
    assert m.pamt.range_pt(hpa) == PageType.PT_REG and not {6 * M2 >> 12} & m.pamt.pamt_pages
    assert m.check_invariants() == []


def test_demote_without_huge_pages_is_invalid():
    m = dpamt()
    td = covered_td(m)
    r = m.tdh_mem_page_demote(td.tdr, 1 << 21, 1, 0x18_0000, 6 * M2, 6 * M2 + 4096)
    assert r.status == st.TDX_OPERAND_INVALID | RCX


def test_python_misuse_is_a_type_error():
    m = dpamt()
    with pytest.raises(TypeError, match="pamt_page0"):
        m.tdh_phymem_pamt_add(M2, "x", 0)
