"""Cost curves: time against TD size per strategy, with an optional uncertainty band."""

from __future__ import annotations

import numpy as np

from ._common import new_figure

COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")


def draw_cost_curves(curves: dict, *, xlabel: str = "TD memory (GiB)",
                     ylabel: str = "teardown time (s)", title: str = "",
                     logx: bool = False, logy: bool = False, width: float = 6.0):
    """`curves` = {strategy: (sizes, seconds, band)}; `band` is None or (low, high) arrays
    the same length as `sizes`. One line per strategy (label = strategy, in dict order) and a
    shaded band where given."""
    if not curves:
        raise ValueError("draw_cost_curves needs at least one strategy")
    fig = new_figure(width, 3.0)
    ax = fig.add_axes((0.12, 0.16, 0.84, 0.72))
    for i, (name, spec) in enumerate(curves.items()):
        if len(spec) != 3:
            raise ValueError(f"{name}: expected (sizes, seconds, band), got {len(spec)} items")
        sizes, secs, band = spec
        x, y = np.asarray(sizes, dtype=float), np.asarray(secs, dtype=float)
        if x.shape != y.shape:
            raise ValueError(f"{name}: sizes and seconds differ in length")
        colour = COLOURS[i % len(COLOURS)]
        ax.plot(x, y, marker="o", markersize=3, color=colour, label=name)
        if band is not None:
            lo, hi = (np.asarray(b, dtype=float) for b in band)
            ax.fill_between(x, lo, hi, color=colour, alpha=0.2, linewidth=0)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
