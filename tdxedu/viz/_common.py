"""Shared helpers for the renderers: Agg figures without pyplot, deterministic PNG bytes.

Every renderer returns a `matplotlib.figure.Figure` built directly (no pyplot global state, no
figure manager to close), sized small and drawn with few text artists: on a 2-core machine a
text costs about 1 ms and an axis with ticks about 40 ms, so panels draw their own labels and
turn axes off (our measurement; on redraw cost see also [MPL-BLIT]).
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.patches import Rectangle
from matplotlib.transforms import Bbox, BboxTransform, IdentityTransform

DPI = 72
OK = "#1a9850"  # success
INFO = "#91bfdb"  # a status that is not an error (TDX_GPA_RANGE_ALREADY_BLOCKED, ...)
BUSY = "#fc8d59"  # TDX_OPERAND_BUSY and friends: retry-able contention
ERROR = "#d73027"  # any other error
NEUTRAL = "#969696"
HIGHLIGHT = "#ff7f00"


def new_figure(width: float, height: float, dpi: int = DPI) -> Figure:
    """A Figure with its own Agg canvas (so `savefig` never touches pyplot)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


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

    def add(self, artist, gid: str | None = None):
        artist.set_transform(self.transform)
        if gid is not None:
            artist.set_gid(gid)
        self.fig.add_artist(artist)
        return artist

    def text(self, x, y, s, **kw):
        return self.fig.text(x, y, s, transform=self.transform, **kw)

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


def legend(fig: Figure, items, *, y: float = 0.03, x0: float = 0.02, step: float | None = None,
           fontsize: float = 6) -> None:
    """A one-row legend of (colour, label) squares, cheaper than `Figure.legend`."""
    items = list(items)
    if not items:
        return
    step = step or min(0.96 / len(items), 0.2)
    for i, (colour, label) in enumerate(items):
        x = x0 + i * step
        fig.add_artist(Rectangle((x, y), 0.012, 0.05, facecolor=colour, edgecolor="#333333",
                                 linewidth=0.4, transform=fig.transFigure, gid=f"legend:{label}"))
        fig.text(x + 0.016, y + 0.025, label, fontsize=fontsize, va="center")


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
    """PNG bytes of a figure; identical input gives identical bytes (no timestamp)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def as_image(fig: Figure):
    """An `IPython.display.Image` of `fig` for showing a static picture in a notebook cell
    (a bare Figure has no rich display without pyplot)."""
    from IPython.display import Image

    return Image(data=figure_png(fig), format="png")


OUTCOME_COLOURS = {"ok": OK, "info": INFO, "busy": BUSY, "error": ERROR, None: NEUTRAL}
