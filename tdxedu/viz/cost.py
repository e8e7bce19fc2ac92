"""Cost curves: time against TD size per strategy, with an optional uncertainty band.

    draw_cost_curves({strategy: (sizes, seconds, band)})
    sweep_figure(tdxedu.cost.sweep(...))    the predicted teardown time of `tdxedu teardown`

Each curve has its own colour, dash and marker (`palette.series_style`): strategies with the
same flow predict the same times, and their curves must stay visible on top of each other.
"""

from __future__ import annotations

import numpy as np

from ._common import MIN_FONT, css_figure
from .palette import series_style

GIB = 1 << 30


def style_axes(ax, *, xlabel: str = "", ylabel: str = "", title: str = "",
               legend_title: str | None = None, legend_outside: bool = True) -> None:
    """Axis labels, ticks, title and legend at readable sizes (>= `MIN_FONT` CSS px); the
    legend goes right of the plot so it never covers a curve."""
    ax.set_xlabel(xlabel, fontsize=MIN_FONT + 1)
    ax.set_ylabel(ylabel, fontsize=MIN_FONT + 1)
    ax.tick_params(labelsize=MIN_FONT)
    if title:
        ax.set_title(title, fontsize=MIN_FONT + 2, loc="left")
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        kw = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)} if legend_outside else {}
        ax.legend(fontsize=MIN_FONT, title=legend_title, title_fontsize=MIN_FONT,
                  frameon=False, **kw)


def draw_cost_curves(curves: dict, *, xlabel: str = "TD memory (GiB)",
                     ylabel: str = "teardown time (s)", title: str = "",
                     logx: bool = False, logy: bool = False, width: float | None = None):
    """`curves` = {strategy: (sizes, seconds, band)}; `band` is None or (low, high) arrays
    the same length as `sizes`. One line per strategy (label = strategy, in dict order) and a
    shaded band where given. `width` in CSS px (default: the notebook's width)."""
    if not curves:
        raise ValueError("draw_cost_curves needs at least one strategy")
    fig = css_figure(360, *([width] if width else []))
    ax = fig.add_axes((0.1, 0.15, 0.62, 0.75))
    for i, (name, spec) in enumerate(curves.items()):
        if len(spec) != 3:
            raise ValueError(f"{name}: expected (sizes, seconds, band), got {len(spec)} items")
        sizes, secs, band = spec
        x, y = np.asarray(sizes, dtype=float), np.asarray(secs, dtype=float)
        if x.shape != y.shape:
            raise ValueError(f"{name}: sizes and seconds differ in length")
        st = series_style(i)
        ax.plot(x, y, markersize=5, label=name, linewidth=1.8, **st)
        if band is not None:
            lo, hi = (np.asarray(b, dtype=float) for b in band)
            ax.fill_between(x, lo, hi, color=st["color"], alpha=0.15, linewidth=0)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    style_axes(ax, xlabel=xlabel, ylabel=ylabel, title=title)
    return fig


def sweep_figure(data: dict, *, title: str | None = None):
    """Teardown time (minutes) vs TD size (GiB, log scale), one line + band per strategy
    (`data` is a `tdxedu.cost.sweep()` result)."""
    fig = css_figure(400)
    ax = fig.add_axes((0.09, 0.12, 0.6, 0.8))
    x = [b / GIB for b in data["sizes_bytes"]]
    for i, (name, s) in enumerate(data["strategies"].items()):
        st = series_style(i)
        ax.plot(x, [v / 60 for v in s["seconds"]], label=name, markersize=5,
                linewidth=2.6 - 0.4 * (i % 4), **st)
        ax.fill_between(x, [v / 60 for v in s["low"]], [v / 60 for v in s["high"]],
                        color=st["color"], alpha=0.12, linewidth=0)
    ax.set_xscale("log", base=2)
    clear = "pages cleared" if data.get("clear_pages", True) else "no clear (6.18+)"
    style_axes(ax, xlabel="TD private memory (GiB)", ylabel="predicted teardown time (min)",
               title=title or f"TD teardown: {data['vcpus']} vCPUs, {data['packages']} "
               f"package(s), {clear}", legend_title="strategy\n(band: fits within 10%)")
    return fig


__all__ = ["draw_cost_curves", "style_axes", "sweep_figure"]
