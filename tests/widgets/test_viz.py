"""Renderers return Figures whose artists reflect the model state (artist data, not pixels)."""

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from tdxedu.scenarios import RunningTd
from tdxedu.steps import td_states
from tdxedu.tdx import TdxModule
from tdxedu.tdx.pamt import PageType
from tdxedu.tdx.sept import SeptState
from tdxedu.tdx.status import status_outcome
from tdxedu.tdx.td import Lifecycle, OpState
from tdxedu.tdx.testing import TdBuilder
from tdxedu.trace import Event, Trace
from tdxedu.viz import (
    SCALE,
    artists_by_gid,
    draw_cost_curves,
    draw_lifecycle,
    draw_pamt,
    draw_roots,
    draw_sept,
    draw_timeline,
    figure_png,
    guest_spans,
    lock_spans,
    pamt_grid,
    sept_colours,
    state_colour,
    timeline_marks,
)
from tdxedu.viz.pamt import TYPE_ORDER


@pytest.fixture(scope="module")
def td():
    m = TdxModule(memory=4 << 20, trace=Trace())
    built = TdBuilder(m).build("finalized", vcpus=1, pages=2)
    return m, built


def test_sept_boxes_follow_entry_states():
    m = TdxModule(memory=4 << 20, trace=Trace())
    built = TdBuilder(m).build("finalized", vcpus=1, pages=2)
    before = sept_colours(draw_sept(m, built.tdr))
    assert before["L0:0x1000"] == to_rgba(state_colour(SeptState.MAPPED))
    assert before["L1:0x0"] == to_rgba(state_colour(SeptState.NL_MAPPED))
    assert {g.split(":")[0] for g in before} == {"L0", "L1", "L2", "L3"}
    m.tdh_mem_range_block(built.tdr, 0x1000, 0)
    fig = draw_sept(m, built.tdr, highlight=(0, 0x1000))
    after = sept_colours(fig)
    assert after["L0:0x1000"] == to_rgba(state_colour(SeptState.BLOCKED))
    assert after["L0:0x0"] == before["L0:0x0"]
    assert artists_by_gid(fig)["L0:0x1000"].get_linewidth() > 2  # highlighted


def test_sept_without_td_says_so():
    fig = draw_sept(TdxModule(memory=2 << 20))
    assert any("no S-EPT" in t.get_text() for t in fig.texts)
    assert fig.get_figheight() * 72 <= 40  # one line, no blank tree-sized picture


def test_pamt_grid_reflects_page_types_and_owner(td):
    m, built = td
    rows, grid = pamt_grid(m)
    assert rows[0] == 0 and grid.shape == (2, 512)
    col = lambda pa: (pa % (2 << 20)) >> 12  # noqa: E731
    assert TYPE_ORDER[grid[0, col(built.tdr)]] == PageType.PT_TDR
    assert TYPE_ORDER[grid[0, col(built.vcpus[0])]] == PageType.PT_TDVPR
    assert TYPE_ORDER[grid[0, col(built.private[0])]] == PageType.PT_REG
    _, owners = pamt_grid(m, by="owner")
    assert owners[0, col(built.private[0])] == 1
    fig = draw_pamt(m, highlight_pa=built.private[0])
    img = artists_by_gid(fig)["pamt-grid"]
    assert img.get_array().shape[1] == 512 * SCALE and "highlight" in artists_by_gid(fig)
    with pytest.raises(ValueError):
        pamt_grid(m, by="colour")


def test_pamt_dynamic_pamt_hook_draws_pairs_and_refcounts(td):
    m, _ = td
    fig = draw_pamt(m, dpamt={0: (True, 256)})
    g = artists_by_gid(fig)
    assert g["pair:0x0"].get_facecolor() != to_rgba("white")
    assert g["refcount:0x0"].get_width() == pytest.approx(g["refcount-of:0x0"].get_width() / 2)
    assert g["pair:0x200000"].get_facecolor() == to_rgba("white")


def test_timeline_marks_outcomes_ipis_and_guest_spans():
    t = Trace()
    t.emit("tdh_vp_enter", 0x1000, status="TDX_SUCCESS", cpu=0, source="tdx-module")
    t.emit("tdh_mem_range_block", 1, 2, 0, status="TDX_SUCCESS", cpu=1, source="tdx-module")
    t.emit("kvm_make_all_cpus_request", "KVM_REQ_OUTSIDE_GUEST_MODE", cpu=None, source="x")
    t.emit("td_exit", 0x1000, status="TDX_SUCCESS", cpu=0, source="tdx-module")
    t.emit("tdh_mem_page_remove", 1, 2, 0, status="TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT",
           cpu=1, source="tdx-module")
    t.emit("tdh_mem_page_remove", 1, 2, 0, status="TDX_TLB_TRACKING_NOT_DONE", cpu=1,
           source="tdx-module")
    t.emit("mmu_lock", "write_lock", cpu=1, source="kvm")
    marks = timeline_marks(t)
    assert marks["seamcall:busy"] == [(4, "cpu1")]
    assert marks["seamcall:error"] == [(5, "cpu1")]
    assert marks["ipi"] == [(2, "KVM thread")]  # no CPU: the actor's lane, never "-"
    assert guest_spans(t) == [(0, 0, 3)]
    assert lock_spans(t) == [(1, "write_lock", 6, None)]
    g = artists_by_gid(draw_timeline(t))
    assert [tuple(o) for o in g["seamcall:ok"].get_offsets()] == [(0, 0), (1, 1), (3, 0)]
    assert [tuple(o) for o in g["seamcall:error"].get_offsets()] == [(5, 1)]
    assert "guest:cpu0:0" in g and "highlight" in g


def test_status_outcome():
    assert status_outcome("TDX_SUCCESS (EPT_VIOLATION)") == "ok"
    assert status_outcome("TDX_GPA_RANGE_ALREADY_BLOCKED") == "info"
    assert status_outcome("TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT") == "busy"
    assert status_outcome("TDX_EPT_WALK_FAILED | TDX_OPERAND_ID_RCX") == "error"
    assert status_outcome(None) is None


def test_lifecycle_lights_the_current_state():
    g = artists_by_gid(draw_lifecycle(Lifecycle.TD_BLOCKED, OpState.RUNNABLE))
    lit = {k for k, a in g.items() if a.get_linewidth() > 1}
    assert lit == {"lifecycle:TD_BLOCKED", "op_state:RUNNABLE"}
    g = artists_by_gid(draw_lifecycle(reclaimed=True))
    assert {k for k, a in g.items() if a.get_linewidth() > 1} == {"lifecycle:reclaimed"}


def test_td_states_follow_the_teardown():
    td = RunningTd("16K", 1, trace=False)
    m, tdr = td.host.module, td.kt.tdr_pa
    assert td_states(m, tdr) == (Lifecycle.TD_KEYS_CONFIGURED, OpState.RUNNABLE, False)
    td.teardown("v6.16")
    assert td_states(m, tdr) == (None, None, True)


def test_roots_bars_show_each_holders_references():
    from tdxedu.scenarios.roots import memslot_update_world
    from tdxedu.sim.engine import Execution

    w = memslot_update_world("v6.6", 2)
    ex = Execution(w)
    for _ in range(6):
        ex.step(ex.runnable()[0])
    roots = w.kvm.arch.tdp_mmu_roots
    assert roots
    g = artists_by_gid(draw_roots(w.kvm))
    for r in roots:
        for holder, n in r.refs.items():
            if n:
                assert g[f"root#{r.hpa}:{holder}"].get_width() == n


def test_cost_curves_plot_each_strategy_with_bands():
    fig = draw_cost_curves({"v6.16": ([1, 2, 4], [4, 8, 16], ([3, 7, 14], [5, 9, 18])),
                            "terminate-vm": ([1, 2, 4], [1, 2, 4], None)})
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["v6.16", "terminate-vm"]
    assert list(ax.lines[0].get_ydata()) == [4, 8, 16]
    assert len(ax.collections) == 1  # one band
    with pytest.raises(ValueError):
        draw_cost_curves({})


def test_rendering_is_deterministic(td):
    m, built = td
    assert figure_png(draw_sept(m, built.tdr)) == figure_png(draw_sept(m, built.tdr))
    assert figure_png(draw_pamt(m)) == figure_png(draw_pamt(m))
    evs = [Event(i, "a", 0, "tdh_mem_track", (), "TDX_SUCCESS", "tdx-module") for i in range(3)]
    assert np.array_equal(np.frombuffer(figure_png(draw_timeline(evs)), np.uint8),
                          np.frombuffer(figure_png(draw_timeline(evs)), np.uint8))
