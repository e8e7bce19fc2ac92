"""Cost curves: time against TD size per strategy, with an optional uncertainty band.

    draw_cost_curves({strategy: (sizes, seconds, band)})
    sweep_figure(tdxedu.cost.sweep(...))    the predicted teardown time of `tdxedu teardown`

Each curve has its own colour, dash and marker (`palette.series_style`): strategies with the
same flow predict the same times, and their curves must stay visible on top of each other.
"""

from __future__ import annotations

import numpy as np

from . import palette
from ._common import MIN_FONT, css_figure
from .palette import series_style

GIB = 1 << 30
SAME_CURVE_OFFSET = 1.06  # x factor for a coinciding curve's markers (log axis: an even nudge)


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
    """Teardown time (minutes, log) vs TD size (GiB, log 2), one line + band per strategy
    (`data` is a `tdxedu.cost.sweep()` result). A strategy whose curve is identical to an
    earlier one (``data["same_as"]``: same flow, same SEAMCALLs) is drawn dashed with hollow
    markers nudged sideways, and its legend entry says which it equals, so neither hides the
    other. The measured size range is shaded, and the query marked."""
    fig = css_figure(400)
    ax = fig.add_axes((0.09, 0.12, 0.5, 0.8))
    x = [b / GIB for b in data["sizes_bytes"]]
    same = data.get("same_as", {})
    for i, (name, s) in enumerate(data["strategies"].items()):
        st = series_style(i)
        y = [v / 60 for v in s["seconds"]]
        twin = same.get(name)
        if twin is None:
            ax.plot(x, y, label=name, linewidth=2.2, markersize=5, color=st["color"],
                    marker=st["marker"])
            ax.fill_between(x, [v / 60 for v in s["low"]], [v / 60 for v in s["high"]],
                            color=st["color"], alpha=0.15, linewidth=0)
        else:  # identical to `twin`: dashed, hollow markers nudged right, no second band
            ax.plot([v * SAME_CURVE_OFFSET for v in x], y, marker=st["marker"],
                    markerfacecolor="none", markersize=6, linestyle=(0, (4, 3)),
                    linewidth=1.6, color=st["color"], label=f"{name} (= {twin}: same curve)")
    rng = data.get("measured_range", {}).get("memory_gib")
    if rng:
        ax.axvspan(rng[0], rng[1], color=palette.GREY, alpha=0.15, linewidth=0,
                   label=f"measured sizes ({rng[0]:g}-{rng[1]:g} GiB)")
    if "query_bytes" in data:
        q = data["query_bytes"] / GIB
        ax.axvline(q, color=palette.BLACK, linestyle=":", linewidth=1.2,
                   label=f"query: {q:g} GiB")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # seconds at 1 GiB and hours at 4 TiB on one picture
    clear = "pages cleared" if data.get("clear_pages", True) else "no clear (6.18+)"
    style_axes(ax, xlabel="TD private memory (GiB)", ylabel="predicted teardown time (min)",
               title=title or f"TD teardown: {data['vcpus']} vCPUs, {data['packages']} "
               f"package(s), {clear}",
               legend_title="band: every model form\nfitting within 10%")
    return fig


__all__ = ["draw_cost_curves", "style_axes", "sweep_figure"]
