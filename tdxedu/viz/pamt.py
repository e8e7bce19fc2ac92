"""The PAMT as a map: one row per 2 MiB range, one pixel column per 4 KiB page, coloured by
the page type the module records ([M15-PAMT]: module 1.5.01 `pamt_manager.h`)
or by owner (the TDR the page belongs to).

Dynamic PAMT hook: pass ``dpamt={range_pa: (has_pair, refcount)}`` or let the module provide
it with a ``dpamt_view()`` method returning that mapping (2 MiB-aligned PA of the range ->
(whether a PAMT page pair is installed, how many 4K pages of the range are in use)). When
present, a side column shows the pair (filled square) and a refcount bar per row.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.patches import Rectangle

from ..tdx.pamt import PAGE_2M, PAGE_SHIFT, PageType
from ._common import HIGHLIGHT, Panel, legend, new_figure

PAGES_PER_2M = PAGE_2M >> PAGE_SHIFT  # 512
TYPE_ORDER = (PageType.PT_NDA, PageType.PT_RSVD, PageType.PT_REG, PageType.PT_TDR,
              PageType.PT_TDCX, PageType.PT_TDVPR, PageType.PT_EPT, PageType.PT_PAMT)
TYPE_COLOURS = ("#f7f7f7", "#525252", "#41ab5d", "#d73027", "#fc8d59", "#fee08b",
                "#4575b4", "#984ea3")
OWNER_COLOURS = ("#f7f7f7", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")
ROW_PX = 7  # pixel rows per 2 MiB range


def pamt_grid(module, *, by: str = "type", max_rows: int = 16):
    """(rows, grid): the 2 MiB-aligned PAs shown and an int array (rows x 512) of category
    indices: `TYPE_ORDER` positions for ``by="type"``, owner rank (0 = none) for ``"owner"``.
    Ranges with a page in use come first, padded with empty ones up to `max_rows`."""
    if by not in ("type", "owner"):
        raise ValueError(f"by must be 'type' or 'owner', got {by!r}")
    pamt = module.pamt
    all_rows = list(range(pamt.base, pamt.base + pamt.size, PAGE_2M))
    if len(all_rows) <= max_rows:
        rows = all_rows
    else:
        used = sorted({(e.pfn << PAGE_SHIFT) & ~(PAGE_2M - 1) for e in pamt.entries.values()
                       if e.pt != PageType.PT_NDA})
        rows = used[:max_rows]
        rows += [pa for pa in all_rows if pa not in set(used)][: max_rows - len(rows)]
        rows.sort()
    index = {pa: i for i, pa in enumerate(rows)}
    owners = sorted({e.owner for e in pamt.entries.values() if e.owner})
    grid = np.zeros((len(rows), PAGES_PER_2M), dtype=np.int8)
    for e in pamt.entries.values():
        pa = e.pfn << PAGE_SHIFT
        r = index.get(pa & ~(PAGE_2M - 1))
        if r is None or e.pt == PageType.PT_NDA:
            continue
        col = (pa % PAGE_2M) >> PAGE_SHIFT
        if by == "type":
            grid[r, col] = TYPE_ORDER.index(e.pt)
        else:
            grid[r, col] = 1 + owners.index(e.owner) % (len(OWNER_COLOURS) - 1) if e.owner \
                else 0
    return rows, grid


def draw_pamt(module, *, by: str = "type", highlight_pa: int | None = None,
              dpamt: dict | None = None, max_rows: int = 16):
    """Draw the PAMT of `module` (a `TdxModule`). `highlight_pa` rings the page a step just
    touched. The picture is a figure image (``fig.images[0]``) of `pamt_grid`, one pixel
    per page and `ROW_PX` pixel rows per range."""
    rows, grid = pamt_grid(module, by=by, max_rows=max_rows)
    if dpamt is None and callable(getattr(module, "dpamt_view", None)):
        dpamt = module.dpamt_view()
    colours = TYPE_COLOURS if by == "type" else OWNER_COLOURS
    left_px, top_px, bottom_px = 70, 22, 24
    side_px = 70 if dpamt else 10
    w_px = left_px + PAGES_PER_2M + side_px
    h_px = top_px + ROW_PX * len(rows) + bottom_px
    fig = new_figure(w_px / 72, h_px / 72)
    rgb = np.array([to_rgb(c) for c in colours])[grid]  # rows x 512 x 3
    img = fig.figimage(np.repeat(rgb, ROW_PX, axis=0)[::-1], xo=left_px, yo=bottom_px,
                       origin="lower")
    img.set_gid("pamt-grid")
    fig.text(0.01, 1 - 4 / h_px, f"PAMT: {len(rows)} x 2 MiB ranges, "
             f"{len(module.pamt.in_use())} pages assigned (colour: {by})", fontsize=8, va="top")
    # one panel in pixel units: x = page index, y = row index from the top
    p = Panel(fig, (left_px / w_px, bottom_px / h_px, PAGES_PER_2M / w_px,
                    ROW_PX * len(rows) / h_px), (0, PAGES_PER_2M), (len(rows), 0))
    step = 1 if len(rows) <= 8 else 4
    for i in range(0, len(rows), step):
        p.text(-4, i + 0.5, f"{rows[i]:#x}", fontsize=6, ha="right", va="center")
    if highlight_pa is not None:
        r = {pa: i for i, pa in enumerate(rows)}.get(highlight_pa & ~(PAGE_2M - 1))
        if r is not None:
            c = (highlight_pa % PAGE_2M) >> PAGE_SHIFT
            p.add(Rectangle((c - 4, r - 0.2), 9, 1.4, fill=False, edgecolor=HIGHLIGHT,
                            linewidth=1.5), gid="highlight")
    if dpamt:
        sp = Panel(fig, ((left_px + PAGES_PER_2M + 6) / w_px, bottom_px / h_px, 60 / w_px,
                         ROW_PX * len(rows) / h_px), (0, 1.2), (len(rows), 0))
        for i, pa in enumerate(rows):
            pair, ref = dpamt.get(pa, (False, 0))
            sp.add(Rectangle((0, i + 0.15), 0.25, 0.7, facecolor="#984ea3" if pair
                             else "white", edgecolor="#333333", linewidth=0.4),
                   gid=f"pair:{pa:#x}")
            sp.add(Rectangle((0.35, i + 0.15), 0.85 * min(ref, PAGES_PER_2M) / PAGES_PER_2M,
                             0.7, facecolor="#984ea3"), gid=f"refcount:{pa:#x}")
        fig.text(1 - 35 / w_px, 1 - 14 / h_px, "pair / refs", fontsize=6, ha="center")
    names = [t.name for t in TYPE_ORDER] if by == "type" else ["none"] + [
        f"owner {i}" for i in range(1, len(OWNER_COLOURS))]
    present = sorted({int(v) for v in np.unique(grid)} | {0})
    legend(fig, [(colours[i], names[i]) for i in present], y=2 / h_px,
           step=min(0.96 / len(present), 0.15))
    return fig
