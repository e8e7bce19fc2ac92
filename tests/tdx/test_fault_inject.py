"""`tdxedu.tdx.fault_inject`: a leaf returns the armed status at its Nth call, without running
(the module's state stays as it was), is still counted and traced, and disarms cleanly."""

from __future__ import annotations

import pytest
from tdx_cases import build_world, new_module

from tdxedu.tdx import status as st
from tdxedu.tdx.fault_inject import clear, inject

BUSY_EPOCH = st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_TD_EPOCH


def test_nth_call_fails_and_leaves_state_alone():
    m = new_module()
    w = build_world(m, "finalized")
    epoch = m.td(w.tdr).tdcs.td_epoch
    with inject(m, "tdh_mem_track", BUSY_EPOCH, nth=2) as f:
        assert m.tdh_mem_track(w.tdr, lp=0).status == st.TDX_SUCCESS
        res = m.tdh_mem_track(w.tdr, lp=1)
        assert res.status == BUSY_EPOCH and res.leaf == "TDH.MEM.TRACK"
        assert m.td(w.tdr).tdcs.td_epoch == epoch + 1  # the failed call changed nothing
        assert m.tdh_mem_track(w.tdr, lp=0).status == st.TDX_SUCCESS
    assert [(n, lp) for n, lp, _ in f.hits] == [(2, 1)]
    assert m.fault_injector is None
    assert m.counts["tdh_mem_track"] == 3
    assert not m.check_invariants()


def test_times_lp_and_stepwise():
    m = new_module()
    w = build_world(m, "finalized")
    f = inject(m, "tdh_mem_track", BUSY_EPOCH, times=0, lp=3)
    assert m.tdh_mem_track(w.tdr, lp=0).status == st.TDX_SUCCESS  # other LP: not counted
    for _ in range(2):
        gen = m.stepwise("tdh_mem_track", w.tdr, lp=3)
        with pytest.raises(StopIteration) as stop:
            next(gen)
        assert stop.value.value.status == BUSY_EPOCH
    assert len(f.hits) == 2
    clear(m)
    assert m.tdh_mem_track(w.tdr, lp=3).status == st.TDX_SUCCESS


def test_bad_arguments_are_clear_errors():
    m = new_module()
    with pytest.raises(ValueError, match="did you mean tdh_mem_page_remove"):
        inject(m, "tdh_mem_page_remov", st.TDX_OPERAND_BUSY)
    with pytest.raises(ValueError, match="nth must be an int >= 1"):
        inject(m, "tdh_mem_track", st.TDX_OPERAND_BUSY, nth=0)
    assert m.fault_injector is None
