"""Shared helpers for the renderers: Agg figures without pyplot, deterministic PNG bytes, sized
for the notebook and sharp on a 2x screen.

Sizes are CSS pixels. A figure is `DISPLAY_WIDTH` CSS px wide (the notebook's output column in
JupyterLab at a 1280 px window is about 840 px) and one point is one CSS px (72 points per
inch), so a font size is its size on screen: every text is at least `MIN_FONT` px. PNGs are
rendered at `SCALE` device pixels per CSS px ([HIDPI]) and shown no wider than their CSS size
(`as_image`, the widgets' Image layout), so no picture is ever stretched.

Every renderer returns a `matplotlib.figure.Figure` built directly (no pyplot global state, no
figure manager to close), drawn with few text artists: a text costs about 1 ms and an axis
with ticks about 40 ms, so panels draw their own labels and turn axes off (our measurement;
on redraw cost see also [MPL-BLIT]). Colours: `tdxedu.viz.palette` ([OKABE-ITO]).
"""

from __future__ import annotations

import functools
import io
import struct

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.textpath import TextPath
from matplotlib.transforms import Bbox, BboxTransform, IdentityTransform

from . import palette

DISPLAY_WIDTH = 800  # CSS px: the width every lesson figure is made for
MIN_FONT = 11  # CSS px (= points here): the smallest text of any figure
SCALE = 2  # device pixels per CSS px in the PNGs
PT_PER_INCH = 72  # one point = one CSS px at the size a figure is shown
RENDER_DPI = SCALE * PT_PER_INCH
PNG_COMPRESS_LEVEL = 6  # zlib level of the PNGs

OK = palette.GREEN  # success
INFO = palette.YELLOW  # a status that is not an error (TDX_GPA_RANGE_ALREADY_BLOCKED, ...)
BUSY = palette.ORANGE  # TDX_OPERAND_BUSY and friends: retry-able contention
ERROR = palette.VERMILLION  # any other error
NEUTRAL = palette.GREY
HIGHLIGHT = palette.HIGHLIGHT


def css_figure(height: float, width: float = DISPLAY_WIDTH) -> Figure:
    """A Figure `width` x `height` CSS px with its own Agg canvas (so `savefig` never touches
    pyplot), rendered at `SCALE` device pixels per CSS px."""
    fig = Figure(figsize=(width / PT_PER_INCH, height / PT_PER_INCH), dpi=RENDER_DPI)
    FigureCanvasAgg(fig)
    return fig


def css_width(fig: Figure) -> float:
    """The width `fig` is meant to be shown at, in CSS px (one point per CSS px)."""
    return fig.get_figwidth() * PT_PER_INCH


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", png[16:24])


class StampText(Text):
    """A Text that Agg draws from a cached bitmap: laying out and rasterising a string costs
    about 1-3 ms in matplotlib, and a Step redraws mostly the same labels (lanes, legends,
    addresses), so each (string, font, colour, alignment, dpi) is rasterised once and then
    copied. Any other renderer (SVG, PDF) or a rotated text draws as a plain Text."""

    def draw(self, renderer):
        s = self.get_text()
        if not self.get_visible() or not s.strip():
            return
        if (not isinstance(renderer, RendererAgg) or self.get_rotation()
                or "$" in s or self.get_usetex() or self.get_bbox_patch() is not None):
            return super().draw(renderer)
        fp = self.get_fontproperties()
        key = (s, tuple(fp.get_family()), fp.get_style(), fp.get_weight(),
               fp.get_size_in_points(), to_hex(self.get_color(), keep_alpha=True),
               self.get_horizontalalignment(), self.get_verticalalignment(),
               self._get_multialignment(), self._linespacing, renderer.dpi)
        img, ox, oy = _stamp(key)
        x, y = self.get_transform().transform(self.get_unitless_position())
        gc = renderer.new_gc()
        renderer.draw_image(gc, round(x + ox), round(y + oy), img)
        gc.restore()
        self.stale = False


@functools.lru_cache(maxsize=2048)
def _stamp(key):
    """(RGBA bitmap, dx, dy from the text's anchor to the bitmap's bottom-left) of a text."""
    s, family, style, weight, size, colour, ha, va, ma, spacing, dpi = key
    fig = Figure(figsize=(1, 1), dpi=dpi)
    fig.patch.set_alpha(0)
    canvas = FigureCanvasAgg(fig)
    t = Text(0, 0, s, fontproperties=FontProperties(family=list(family), style=style,
                                                     weight=weight, size=size),
             color=colour, ha=ha, va=va, ma=ma, linespacing=spacing)
    fig._set_artist_props(t)  # (sets the figure's transform: replace it after)
    t.set_transform(IdentityTransform())
    fig.texts.append(t)
    bb = t.get_window_extent(canvas.get_renderer())
    pad = 2
    w, h = int(np.ceil(bb.width)) + 2 * pad, int(np.ceil(bb.height)) + 2 * pad
    fig.set_size_inches(w / dpi, h / dpi)
    dx, dy = np.floor(bb.x0) - pad, np.floor(bb.y0) - pad
    t.set_position((-dx, -dy))
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[::-1].copy()
    return img, dx, dy


def put_text(fig: Figure, x: float, y: float, s: str, *, transform=None, **kw) -> Text:
    """`fig.text` with a `StampText` (same arguments; `transform` default: figure fraction)."""
    t = StampText(x, y, s, **kw)
    fig._set_artist_props(t)  # (sets the figure's transform: replace it after)
    t.set_transform(transform if transform is not None else fig.transSubfigure)
    fig.texts.append(t)
    t._remove_method = fig.texts.remove
    return t


@functools.lru_cache(maxsize=4096)
def text_px(s: str, size: float = MIN_FONT, bold: bool = False) -> float:
    """Width in CSS px of one line of `s` in the default font (laid out once, then cached):
    how the renderers size label columns and lay legends out."""
    prop = FontProperties(size=size, weight="bold" if bold else "normal")
    return TextPath((0, 0), s, prop=prop).get_extents().width if s.strip() else 0.0


def min_font(fig: Figure) -> float:
    """The smallest size (CSS px at the figure's display size) of any visible, non-empty text
    of `fig`, tick labels and legends included (what `MIN_FONT` is checked against)."""
    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    return min(sizes) if sizes else float("inf")


class Panel:
    """A data-coordinate region of a figure without an Axes (an Axes with its tick machinery
    costs tens of milliseconds to create and draw; these panels redraw on every Step).

    `rect` = (left, bottom, width, height) in figure fractions; `xlim`/`ylim` map onto it
    (give ylim as (top, bottom) values reversed to flip). Artists go to `fig.artists` /
    `fig.texts` with their gid, which is what the tests read."""

    def __init__(self, fig: Figure, rect, xlim, ylim):
        (x0, x1), (y0, y1) = xlim, ylim
        self.fig = fig
        self.transform = BboxTransform(Bbox([[x0, y0], [x1, y1]]),
                                       Bbox.from_bounds(*rect)) + fig.transFigure

    @classmethod
    def px(cls, fig: Figure, left: float, bottom: float, width: float, height: float, xlim,
           ylim) -> Panel:
        """A panel placed in CSS px from the figure's bottom-left corner."""
        w, h = css_width(fig), fig.get_figheight() * PT_PER_INCH
        return cls(fig, (left / w, bottom / h, width / w, height / h), xlim, ylim)

    def add(self, artist, gid: str | None = None):
        artist.set_transform(self.transform)
        if gid is not None:
            artist.set_gid(gid)
        self.fig.add_artist(artist)
        return artist

    def text(self, x, y, s, **kw):
        return put_text(self.fig, x, y, s, transform=self.transform, **kw)

    def lines(self, segments, gid: str | None = None, **kw):
        return self.add(LineCollection(segments, **kw), gid)

    def line(self, xs, ys, gid: str | None = None, **kw):
        return self.add(Line2D(xs, ys, **kw), gid)

    def marks(self, xs, ys, marker: str = "s", size: float = 30, gid: str | None = None,
              **kw):
        """Scatter-like marks: a PathCollection whose offsets are the data points."""
        ms = MarkerStyle(marker)
        path = ms.get_path().transformed(ms.get_transform())
        coll = PathCollection([path], offsets=list(zip(xs, ys, strict=True)),
                              offset_transform=self.transform, **kw)
        coll.set_sizes([size], self.fig.dpi)
        coll.set_transform(IdentityTransform())
        if gid is not None:
            coll.set_gid(gid)
        self.fig.add_artist(coll)
        return coll


def legend(fig: Figure, items, *, y: float = 4, x0: float = 8, height: float = 20,
           fontsize: float = MIN_FONT) -> list[str]:
    """A legend of (colour, label) or (colour, label, marker) entries laid out left to right
    from CSS px (`x0`, `y`) above the bottom edge, wrapping onto rows of `height` px (upwards
    from `y`). Cheaper than `Figure.legend`. Each swatch gets gid ``"legend:<label>"``;
    returns the labels (what the legend tests compare with the kinds drawn).

    A marker of "band" / "bar" draws a thick / thin line, any other matplotlib marker a
    symbol, None a square."""
    items = list(items)
    w, h = css_width(fig), fig.get_figheight() * PT_PER_INCH
    rows: list[list[tuple]] = [[]]
    x = x0
    for item in items:
        colour, label, marker = (tuple(item) + (None,))[:3]
        need = 18 + text_px(label, fontsize) + 16
        if rows[-1] and x + need > w - 4:
            rows.append([])
            x = x0
        rows[-1].append((x, colour, label, marker))
        x += need
    for r, row in enumerate(rows):
        yc = (y + (len(rows) - 1 - r) * height + height / 2) / h
        for x, colour, label, marker in row:
            gid = f"legend:{label}"
            if marker in ("band", "bar"):
                fig.add_artist(Line2D([x / w, (x + 14) / w], [yc, yc], color=colour,
                                      linewidth=8 if marker == "band" else 3,
                                      solid_capstyle="butt", gid=gid,
                                      transform=fig.transFigure))
            elif marker is None:
                fig.add_artist(Rectangle((x / w, yc - 6 / h), 12 / w, 12 / h,
                                         facecolor=colour, edgecolor=palette.EDGE,
                                         linewidth=0.6, transform=fig.transFigure, gid=gid))
            else:
                fig.add_artist(Line2D([(x + 7) / w], [yc], marker=marker, markersize=9,
                                      color=colour, markerfacecolor=colour,
                                      markeredgecolor=palette.EDGE if marker != "|"
                                      else colour, markeredgewidth=0.6 if marker != "|"
                                      else 2, linestyle="none", gid=gid,
                                      transform=fig.transFigure))
            put_text(fig, (x + 18) / w, yc, label, fontsize=fontsize, va="center")
    return [i[1] for i in items]


def legend_height(fig_width: float, labels, *, fontsize: float = MIN_FONT,
                  height: float = 20, x0: float = 8) -> float:
    """CSS px that `legend` needs for `labels` on a figure `fig_width` px wide."""
    rows, x = 1, x0
    for label in labels:
        need = 18 + text_px(label, fontsize) + 16
        if x > x0 and x + need > fig_width - 4:
            rows, x = rows + 1, x0
        x += need
    return rows * height if labels else 0


def legend_labels(fig: Figure) -> set[str]:
    """Labels of the swatches `legend` drew on `fig`."""
    return {g.split(":", 1)[1] for g in artists_by_gid(fig) if g.startswith("legend:")}


def artists_by_gid(fig: Figure) -> dict[str, object]:
    """Every artist of `fig` (figure-level, and inside any Axes) that has a gid."""
    out = {}
    pool = list(fig.artists) + list(fig.texts) + list(fig.images)
    for ax in fig.axes:
        pool += list(ax.patches) + list(ax.collections) + list(ax.lines) + list(ax.texts)
    for a in pool:
        if a.get_gid():
            out[a.get_gid()] = a
    return out


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure at `SCALE` device px per CSS px; identical input gives identical
    bytes (no timestamp). Panels (figures from `css_figure` without matplotlib Axes) are
    drawn once on their canvas and encoded with a fixed palette (`_png_palette`: the
    package's colours, their blends with white and black, greys): every colour the renderers
    use is exact, anti-aliased edges take the nearest blend, and the PNG is about 40 % of an
    RGB one (the lessons save every picture). Plots with Axes (translucent bands) keep full
    colour."""
    from PIL import Image

    if fig.dpi != RENDER_DPI or fig.get_layout_engine() is not None or fig.axes:
        # matplotlib Axes (plots with translucent bands): full colour, no palette
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=RENDER_DPI, metadata={"Software": None},
                    pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
        return buf.getvalue()
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    w, h = canvas.get_width_height(physical=True)
    img = Image.frombuffer("RGBA", (w, h), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    img = img.convert("RGB").quantize(palette=_png_palette(), dither=Image.Dither.NONE)
    img.save(buf, format="png", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def palette_colours() -> list[tuple[int, int, int]]:
    """The 8-bit colours of `figure_png`'s palette: greys, every named colour of `palette`
    exactly, and each colour blended with white (anti-aliasing over the background) and
    black (over text and edges). A colour within `spacing` units (in every channel) of one
    already in is left out: Pillow's nearest-colour search is approximate, and well spaced
    entries keep the named colours (white first) exact."""
    from matplotlib.colors import to_rgb

    named = [v for k, v in vars(palette).items() if k.isupper() and isinstance(v, str)
             and v.startswith("#")]
    named += list(palette.SEPT_STATES.values()) + list(palette.PAGE_TYPES.values())
    named += list(palette.OWNERS) + list(palette.HOLDERS.values())
    named += ["#F4F4F4", "#E0E0E0", "#E8B9D3", "#F8DDA0"]
    named += [m.colour for m in palette.MARKS.values()]
    out: list[tuple[int, int, int]] = []
    spacing = 8

    def add(rgb):
        c = tuple(int(round(255 * v)) for v in rgb)
        if all(max(abs(a - b) for a, b in zip(c, o, strict=True)) >= spacing for o in out):
            out.append(c)

    for c in ["#FFFFFF", "#000000", *named]:
        add(to_rgb(c))
    for g in np.linspace(0, 1, 33):
        add((g, g, g))
    chroma = [c for c in dict.fromkeys(named) if len(set(to_rgb(c))) > 1]
    for c in chroma:
        r = np.array(to_rgb(c))
        for t in np.linspace(0.15, 0.9, 8):
            add(r * t + (1 - t))
        for t in (0.35, 0.7):
            add(r * t)
    return out[:256]


@functools.lru_cache(maxsize=1)
def _png_palette():
    from PIL import Image

    cols = palette_colours()
    flat = [v for c in cols for v in c]
    flat += flat[-3:] * (256 - len(cols))
    img = Image.new("P", (1, 1))
    img.putpalette(flat)
    return img


def as_image(fig: Figure):
    """An `IPython.display.Image` of `fig` for showing a static picture in a notebook cell
    (a bare Figure has no rich display without pyplot), shown at its CSS width: sharp on a
    2x screen, never stretched."""
    from IPython.display import Image

    return Image(data=figure_png(fig), format="png", width=round(css_width(fig)))


OUTCOME_COLOURS = {"ok": OK, "info": INFO, "busy": BUSY, "error": ERROR, None: NEUTRAL}
