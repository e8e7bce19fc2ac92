"""Renderers: pure functions from model state or a trace to a `matplotlib.figure.Figure`.

No pyplot: every function builds a `Figure` with its own Agg canvas, so nothing needs closing
and nothing leaks between calls; `figure_png(fig)` gives deterministic PNG bytes at 2 device
pixels per CSS px, `as_image(fig)` shows one in a notebook at its CSS width. Sizes are CSS px
(`css_figure`, `DISPLAY_WIDTH`), colours come from `palette`.

    draw_sept(module, tdr)        Secure-EPT tree, colour per SeptState
    draw_pamt(module)             PAMT map: 2 MiB rows x 4 KiB pages, by page type or owner
    draw_roots(kvm)               TDP MMU roots: role, valid/invalid, references per holder
    draw_timeline(trace)          per-CPU (or per-actor) lanes of SEAMCALLs, IPIs, guest runs
                                  and lock holds
    draw_lifecycle(lc, op_state)  TD lifecycle + OP_STATE machines, current state lit
    draw_cost_curves(curves)      {strategy: (sizes, seconds, band)}
    sweep_figure(sweep(...))      predicted teardown time vs TD size, per strategy
"""

from . import palette
from ._common import (
    DISPLAY_WIDTH,
    MIN_FONT,
    RENDER_DPI,
    SCALE,
    Panel,
    artists_by_gid,
    as_image,
    css_figure,
    css_width,
    figure_png,
    legend_labels,
    min_font,
    png_size,
)
from .cost import draw_cost_curves, sweep_figure
from .lifecycle import draw_lifecycle
from .pamt import draw_pamt, pamt_grid
from .roots import draw_roots
from .sept import draw_sept, sept_colours, state_colour
from .timeline import draw_timeline, guest_spans, lane_label, lock_spans, timeline_marks

__all__ = ["palette", "DISPLAY_WIDTH", "MIN_FONT", "RENDER_DPI", "SCALE", "Panel", "artists_by_gid",
           "as_image", "css_figure", "css_width", "figure_png", "legend_labels", "min_font",
           "png_size", "draw_cost_curves", "sweep_figure", "draw_lifecycle", "draw_pamt",
           "pamt_grid", "draw_roots", "draw_sept", "sept_colours", "state_colour",
           "draw_timeline", "guest_spans", "lane_label", "lock_spans", "timeline_marks"]
