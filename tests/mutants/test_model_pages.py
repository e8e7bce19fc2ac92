"""What a page still holds when the host gets it back (allocator invariants pg-*): cache lines
dirty under a private KeyID ([K616] tdh_phymem_page_wbinvd_hkid / _tdr) and TD data that only
a MOVDIR64B reset removes on X86_BUG_TDX_PW_MCE CPUs ([AH-clear])."""

from __future__ import annotations

from tdxedu.kvm.host import Host
from tdxedu.scenarios import RunningTd
from tdxedu.tdx.pamt import KEYID_SHIFT


def test_correct_teardown_leaves_no_td_data_and_no_dirty_lines():
    for clear in (True, False):  # 6.16 / erratum CPU, and 6.18 on a CPU without the erratum
        td = RunningTd(memory=3 * 4096, vcpus=2, clear_pages=clear)
        rep = td.teardown()
        assert rep.ok and not rep.errors, rep.summary()
        m = td.host.module
        assert not any(m.dirty_keyids.values())
        # without the erratum nobody resets the pages: TD data stays, and that is allowed
        assert bool(m.td_data) is (not clear)


def test_write_back_brings_td_data_back_and_movdir64b_removes_it():
    """The model's memory: a TD page holds TD data; WBINVD writes the dirty lines back (data
    in memory); only the host's MOVDIR64B clears it; a clear *before* the write-back does not
    stick."""
    h = Host(memory=8 << 20)
    m = h.module
    pa = h.allocator.alloc_page("x")
    m._dirty(pa, 33)
    m.host_movdir64b(pa)  # too early: the dirty lines are still in the cache
    assert m.has_dirty_lines(pa) == 33
    m.tdh_phymem_page_wbinvd(pa | 33 << KEYID_SHIFT, lp=0)
    assert m.has_dirty_lines(pa) is None and m.holds_td_data(pa) == 33
    h.allocator.free_page(pa)
    assert h.allocator.errors and h.allocator.errors[0].startswith("pg-td-data")


def test_no_td_data_alarm_without_the_erratum():
    h = Host(memory=8 << 20, x86_bug_tdx_pw_mce=False)
    pa = h.allocator.alloc_page("x")
    h.module._dirty(pa, 33)
    h.module.tdh_phymem_page_wbinvd(pa | 33 << KEYID_SHIFT, lp=0)
    h.allocator.free_page(pa)
    assert h.allocator.errors == []


def test_tdr_is_written_back_before_it_is_cleared():
    """[K616] tdx_reclaim_td_control_pages: __tdx_reclaim_page(TDR), WBINVD(TDR), clear."""
    td = RunningTd(memory=4096, vcpus=1)
    tdr = td.kt.tdr_pa
    td.teardown()
    ev = [(e.op, e.args[:1]) for e in td.trace.events
          if e.op in ("TDH.PHYMEM.PAGE.WBINVD", "tdh_phymem_page_wbinvd", "tdx_clear_page")]
    ops = [e.op for e in td.trace.events if (e.args[:1] == (tdr,) or e.op.lower().endswith(
        "wbinvd")) and e.op != "tdh_mem_page_remove"]
    assert ev, "trace has WBINVD and clear events"
    last_clear = max(i for i, e in enumerate(td.trace.events)
                     if e.op == "tdx_clear_page" and e.args[:1] == (tdr,))
    wbinvd = [i for i, e in enumerate(td.trace.events) if "wbinvd" in e.op.lower()]
    assert wbinvd and max(wbinvd) < last_clear, ops
