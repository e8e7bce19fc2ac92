"""Every figure the package draws, as a learner sees it: its PNG has `SCALE` pixels per CSS px
of the width it is shown at (sharp on a 2x screen, never stretched), that width fits the
notebook, the smallest text is >= `MIN_FONT` CSS px, no text sticks out of the picture, and
the legend lists exactly the kinds of marks drawn (no more, no fewer).

One case per figure function (and per mode that changes what is drawn); the pictures are
the lessons' own ([HIDPI] for the 2x rendering, [OKABE-ITO] for the palette).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from tdxedu.cost import sweep
from tdxedu.kvm.tdx import TEARDOWN_POLICIES
from tdxedu.lessons.dynamic_pamt import pamt_memory_curves
from tdxedu.scenarios import RunningTd
from tdxedu.steps import TdLifeSource, roots_source
from tdxedu.tdx import TdxModule
from tdxedu.tdx.td import Lifecycle, OpState
from tdxedu.tdx.testing import TdBuilder
from tdxedu.trace import Event, Trace
from tdxedu.viz import (
    DISPLAY_WIDTH,
    MIN_FONT,
    SCALE,
    artists_by_gid,
    as_image,
    css_width,
    draw_cost_curves,
    draw_lifecycle,
    draw_pamt,
    draw_roots,
    draw_sept,
    draw_timeline,
    figure_png,
    legend_labels,
    min_font,
    palette,
    pamt_grid,
    png_size,
    sweep_figure,
)
from tdxedu.viz.palette import MARKS
from tdxedu.viz.pamt import TYPE_ORDER
from tdxedu.viz.roots import HOLDER_LABELS, holder_kind
from tdxedu.viz.sept import STATE_COLOURS
from tdxedu.widgets import roots_stepper, td_life_stepper
from tdxedu.widgets.lesson_pamt import DpamtLifeSource, draw_dpamt, draw_pamt_memory
from tdxedu.widgets.lesson_roots import draw_storm, smm_storm_curves


def _run(src, n=None):
    while not src.done and (n is None or src.n < n):
        src.step()
    return src


def _life(n=None):
    return _run(TdLifeSource("64K", 2, "v6.16"), n)


def _module():
    m = TdxModule(memory=4 << 20, trace=Trace())
    built = TdBuilder(m).build("finalized", vcpus=1, pages=2)
    return m, built


def _roots(scenario, policy, n):
    return _run(roots_source(scenario, policy, seed=0), n)


def _mixed_trace():
    """Every timeline mark kind at once: outcomes, IPI, lock hold, guest run, KVM step,
    events with and without a CPU."""
    t = Trace()
    t.emit("tdh_vp_enter", 0x1000, status="TDX_SUCCESS", cpu=0, source="tdx-module")
    t.emit("tdh_mem_range_block", 1, 2, 0, status="TDX_SUCCESS", cpu=1, source="tdx-module")
    t.emit("kvm_make_all_cpus_request", "KVM_REQ_OUTSIDE_GUEST_MODE", cpu=None, source="x")
    t.emit("td_exit", 0x1000, status="TDX_SUCCESS", cpu=0, source="tdx-module")
    t.emit("tdh_mem_page_remove", 1, 2, 0, status="TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT",
           cpu=1, source="tdx-module")
    t.emit("tdh_mem_page_remove", 1, 2, 0, status="TDX_TLB_TRACKING_NOT_DONE", cpu=1,
           source="tdx-module")
    t.emit("tdh_mem_range_block", 1, 2, 0, status="TDX_GPA_RANGE_ALREADY_BLOCKED", cpu=1,
           source="tdx-module")
    t.emit("write_lock", "mmu_lock", cpu=1, source="kvm")
    t.emit("tdp_mmu_zap_root", cpu=1, source="kvm")
    return t


def _dpamt_source():
    return _run(DpamtLifeSource("2M", 2), 40)


FIGURES = {
    "timeline:td-life": lambda: draw_timeline(_life(60).trace),
    "timeline:mixed": lambda: draw_timeline(_mixed_trace()),
    "timeline:empty": lambda: draw_timeline([]),
    "timeline:vm-destroy (actors)": lambda: draw_timeline(
        _roots("vm-destroy-td", "v6.16", None).trace),
    "timeline:last-put-race (actors)": lambda: draw_timeline(
        _roots("last-put-race", "v6.6", None).trace),
    "sept:td": lambda: draw_sept(_module()[0]),
    "sept:blocked+highlight": lambda: _blocked_sept(),
    "sept:none": lambda: draw_sept(None),
    "pamt:type": lambda: draw_pamt(_module()[0], highlight_pa=_module()[1].private[0]),
    "pamt:owner": lambda: draw_pamt(_module()[0], by="owner"),
    "pamt:dpamt hook": lambda: draw_pamt(_module()[0], dpamt={0: (True, 256)}),
    "pamt:dynamic pamt lesson": lambda: draw_dpamt(_dpamt_source().td.host),
    "roots:memslot-update": lambda: draw_roots(_roots("memslot-update", "v6.6", 4).kvm),
    "roots:none": lambda: draw_roots(_roots("memslot-update", "v6.6", 0).kvm),
    "lifecycle:running": lambda: draw_lifecycle(Lifecycle.TD_KEYS_CONFIGURED,
                                                OpState.RUNNABLE),
    "lifecycle:reclaimed": lambda: draw_lifecycle(reclaimed=True),
    "cost curves": lambda: draw_cost_curves(
        {"a": ([1, 2, 4], [1, 2, 4], ([0.9, 1.8, 3.6], [1.1, 2.2, 4.4])),
         "b": ([1, 2, 4], [2, 3, 5], None)}, title="teardown"),
    "sweep (tdxedu teardown --plot, lesson 04)": lambda: sweep_figure(
        sweep(["1G", "64G", "1T"], TEARDOWN_POLICIES, 4)),
    "storm (lesson 06)": lambda: draw_storm(smm_storm_curves((0, 1, 2, 5))),
    "pamt memory (lesson 05)": lambda: draw_pamt_memory(pamt_memory_curves()),
}


def _blocked_sept():
    m, built = _module()
    m.tdh_mem_range_block(built.tdr, 0x1000, 0)
    return draw_sept(m, built.tdr, highlight=(0, 0x1000))


@pytest.fixture(scope="module")
def figures():
    return {}


def _fig(figures, name) -> Figure:
    if name not in figures:
        figures[name] = FIGURES[name]()
    return figures[name]


@pytest.mark.parametrize("name", list(FIGURES))
def test_picture_is_2x_fits_the_notebook_and_text_is_readable(figures, name):
    fig = _fig(figures, name)
    shown = css_width(fig)
    assert shown <= DISPLAY_WIDTH, f"{name}: {shown} CSS px is wider than the notebook"
    png = figure_png(fig)
    w, h = png_size(png)
    assert w == pytest.approx(SCALE * shown, abs=1), f"{name}: {w} px for {shown} CSS px"
    assert h == pytest.approx(SCALE * fig.get_figheight() * 72, abs=1)
    assert min_font(fig) >= MIN_FONT, f"{name}: a text of {min_font(fig)} CSS px"
    # shown at its CSS width as a static image, never stretched
    assert as_image(fig).width == round(shown)
    # no text sticks out of the picture (a cut label is as unreadable as a tiny one)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    W, H = fig.canvas.get_width_height(physical=True)
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.texts
             if t.get_visible() and t.get_text().strip()]
    boxes += [(f"axes {i} (ticks, labels, legend)", ax.get_tightbbox(renderer))
              for i, ax in enumerate(fig.axes)]
    for text, bb in boxes:
        assert bb.x0 >= -2 and bb.y0 >= -2 and bb.x1 <= W + 2 and bb.y1 <= H + 2, (
            f"{name}: {text!r} is cut off at {bb} in {W}x{H}")


# --- legends: exactly the kinds drawn -------------------------------------------------------
def _timeline_kinds(fig) -> set[str]:
    drawn = set()
    for gid in artists_by_gid(fig):
        kind = gid if gid.startswith("seamcall:") else gid.split(":")[0]
        if kind in MARKS:
            drawn.add(kind)
    return {MARKS[k].label for k in drawn}


def _sept_kinds(fig) -> set[str]:
    by_colour = {to_hex(c): s.name for s, c in STATE_COLOURS.items()}
    return {by_colour[to_hex(a.get_facecolor())] for g, a in artists_by_gid(fig).items()
            if re.fullmatch(r"L\d:0x[0-9a-f]+", g)}


def _pamt_kinds(fig, by="type") -> set[str]:
    img = artists_by_gid(fig)["pamt-grid"].get_array()
    colours = {to_hex(tuple(px / 255)) for px in np.unique(img.reshape(-1, 3), axis=0)}
    names = {to_hex(palette.PAGE_TYPES[t.name]): t.name for t in TYPE_ORDER} if by == "type" \
        else {to_hex(c): "no owner" if i == 0 else f"TD {i}" for i, c in
              enumerate(palette.OWNERS)}
    kinds = {names[c] for c in colours if c in names}
    g = artists_by_gid(fig)
    if any(k.startswith("pair:") and to_hex(a.get_facecolor()) != "#ffffff"
           for k, a in g.items()):
        kinds.add("PAMT page pair installed")
    if any(k.startswith("refcount:") and a.get_width() > 0 for k, a in g.items()):
        kinds.add("refcount (4K pages in use)")
    return kinds


def _roots_kinds(fig) -> set[str]:
    kinds = set()
    for gid in artists_by_gid(fig):
        m = re.fullmatch(r"root#\d+:(.+)", gid)
        if m:
            kinds.add(HOLDER_LABELS[holder_kind(m.group(1))])
        elif gid.startswith("mismatch#"):
            kinds.add("count != references held")
    return kinds


def _axes_kinds(fig) -> set[str]:
    return {a.get_label() for ax in fig.axes for a in [*ax.get_lines(), *ax.patches]
            if not a.get_label().startswith("_")}


def _axes_legend(fig) -> set[str]:
    return {t.get_text() for ax in fig.axes if ax.get_legend()
            for t in ax.get_legend().get_texts()}


@pytest.mark.parametrize("name", list(FIGURES))
def test_legend_lists_exactly_the_kinds_drawn(figures, name):
    fig = _fig(figures, name)
    kind = name.split(":")[0]
    if kind == "timeline":
        assert legend_labels(fig) == _timeline_kinds(fig)
    elif kind == "sept":
        assert legend_labels(fig) == _sept_kinds(fig)
    elif kind == "pamt":
        by = "owner" if name == "pamt:owner" else "type"
        assert legend_labels(fig) == _pamt_kinds(fig, by)
    elif kind == "roots":
        assert legend_labels(fig) == _roots_kinds(fig)
    elif kind == "lifecycle":  # every box is labelled in place: no legend
        assert legend_labels(fig) == set()
    else:  # matplotlib Axes: one legend entry per curve
        assert _axes_legend(fig) == _axes_kinds(fig) and _axes_kinds(fig)


def test_the_mixed_timeline_draws_every_mark_kind_distinct(figures):
    """Every kind of mark appears, each with its own colour-and-shape pair."""
    fig = _fig(figures, "timeline:mixed")
    assert _timeline_kinds(fig) == {m.label for k, m in MARKS.items() if k != "seamcall:None"}
    pairs = [(m.colour.lower(), m.marker) for m in MARKS.values()]
    assert len(set(pairs)) == len(pairs)
    assert len({m.colour.lower() for k, m in MARKS.items()
                if k.startswith("seamcall:") and k != "seamcall:None"}) == 4


def test_lanes_are_named_after_the_actor_when_there_is_no_cpu(figures):
    """Lesson 06: vCPU threads, kvm_destroy_vm, RCU callbacks, no lane called "-"."""
    names = lambda fig: {t.get_text() for t in fig.texts}  # noqa: E731
    destroy = names(_fig(figures, "timeline:vm-destroy (actors)"))
    assert {"vCPU0 thread", "vCPU1 thread", "kvm_destroy_vm"} <= destroy
    race = names(_fig(figures, "timeline:last-put-race (actors)"))
    assert "RCU callback" in race or "mmu_lock reader 0" in race
    for name in FIGURES:
        if name.startswith("timeline"):
            assert "-" not in names(_fig(figures, name)), name


def test_pamt_labels_every_row_with_its_address(figures):
    m, _ = _module()
    rows, _ = pamt_grid(m)
    texts = {t.get_text() for t in draw_pamt(m).texts}
    assert {f"{pa:#x}" for pa in rows} <= texts


def test_widget_pictures_are_shown_at_their_css_width_never_wider():
    """The Stepper's Image widgets stretch to the notebook but no further than the picture's
    CSS width, which is its pixel width / SCALE."""
    for st in (td_life_stepper("64K", 2), roots_stepper()):
        st.step_button.click()
        for name, img in st.images.items():
            w, _ = png_size(img.value)
            assert img.layout.max_width == f"{w // SCALE}px", name
            assert img.layout.width == "100%" and img.layout.height == "auto"
            assert w // SCALE <= DISPLAY_WIDTH


def test_a_running_td_timeline_shows_its_guest_run_in_the_legend():
    td = RunningTd("16K", 1)
    fig = draw_timeline(td.trace)
    assert MARKS["guest"].label in legend_labels(fig)


def test_events_are_drawn_once(figures):
    """Each event of the window is one mark (no event hidden under a second, or lost)."""
    t = _mixed_trace()
    fig = _fig(figures, "timeline:mixed")
    n = sum(len(a.get_offsets()) for g, a in artists_by_gid(fig).items()
            if (g.startswith("seamcall:") or g in ("ipi", "lock", "kvm")))
    assert n == len(t.events)
    assert isinstance(t.events[0], Event)


def test_png_palette_keeps_the_package_colours_exact():
    """figure_png encodes with a fixed palette: white stays white and every colour a mark
    kind, S-EPT state or page type uses comes out within a few units of itself."""
    import io

    from matplotlib.colors import to_rgb
    from PIL import Image

    from tdxedu.viz._common import _png_palette

    wanted = [m.colour for m in MARKS.values()] + list(palette.SEPT_STATES.values()) + list(
        palette.PAGE_TYPES.values()) + ["#FFFFFF", "#000000"]
    rgb = [tuple(round(255 * v) for v in to_rgb(c)) for c in wanted]
    im = Image.new("RGB", (len(rgb), 1))
    im.putdata(rgb)
    q = im.quantize(palette=_png_palette(), dither=Image.Dither.NONE).convert("RGB")
    got = [q.getpixel((i, 0)) for i in range(len(rgb))]
    for c, want, have in zip(wanted, rgb, got, strict=True):
        assert max(abs(a - b) for a, b in zip(want, have, strict=True)) <= 4, (c, have)
    png = figure_png(draw_lifecycle())
    assert Image.open(io.BytesIO(png)).convert("RGB").getpixel((2, 2)) == (255, 255, 255)
