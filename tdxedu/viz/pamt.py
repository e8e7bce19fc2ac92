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
from matplotlib.image import FigureImage
from matplotlib.patches import Rectangle
from matplotlib.transforms import IdentityTransform

from ..tdx.pamt import PAGE_2M, PAGE_SHIFT, PageType
from . import palette
from ._common import (
    DISPLAY_WIDTH,
    HIGHLIGHT,
    MIN_FONT,
    SCALE,
    Panel,
    css_figure,
    legend,
    legend_height,
    put_text,
    text_px,
)

PAGES_PER_2M = PAGE_2M >> PAGE_SHIFT  # 512
TYPE_ORDER = (PageType.PT_NDA, PageType.PT_RSVD, PageType.PT_REG, PageType.PT_TDR,
              PageType.PT_TDCX, PageType.PT_TDVPR, PageType.PT_EPT, PageType.PT_PAMT)
TYPE_COLOURS = tuple(palette.PAGE_TYPES[t.name] for t in TYPE_ORDER)
OWNER_COLOURS = palette.OWNERS
ROW_PX = 16  # CSS px per 2 MiB range (2 of them a white gap)
PAIR_COLOUR = palette.PURPLE  # a Dynamic PAMT page pair installed: the PT_PAMT colour
REFCOUNT_COLOUR = palette.SKY_BLUE


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


class PixelImage(FigureImage):
    """A figure image drawn pixel for pixel (no resampling: the grid is built at device
    resolution), `rgb` rows bottom first, at device px (`xo`, `yo`)."""

    def __init__(self, fig, rgb, xo: int, yo: int):
        super().__init__(fig, offsetx=xo, offsety=yo, origin="lower")
        self.set_data(rgb)
        alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
        self._rgba = np.ascontiguousarray(np.concatenate([rgb, alpha], axis=2))

    def make_image(self, renderer, magnification=1.0, unsampled=False):
        return self._rgba, self.ox, self.oy, IdentityTransform()


def draw_pamt(module, *, by: str = "type", highlight_pa: int | None = None,
              dpamt: dict | None = None, max_rows: int = 16, width: float = DISPLAY_WIDTH):
    """Draw the PAMT of `module` (a `TdxModule`). `highlight_pa` rings the page a step just
    touched. The picture is a figure image (``fig.images[0]``, gid ``"pamt-grid"``) of
    `pamt_grid`: one CSS px column per page, `ROW_PX` per range, every row labelled with its
    physical address. The legend lists the page types (or owners) drawn, and the pair /
    refcount marks of the Dynamic PAMT column when there is one."""
    rows, grid = pamt_grid(module, by=by, max_rows=max_rows)
    if dpamt is None and callable(getattr(module, "dpamt_view", None)):
        dpamt = module.dpamt_view()
    colours = TYPE_COLOURS if by == "type" else OWNER_COLOURS
    names = [t.name for t in TYPE_ORDER] if by == "type" else ["no owner"] + [
        f"TD {i}" for i in range(1, len(OWNER_COLOURS))]
    present = sorted(int(v) for v in np.unique(grid))
    items = [(colours[i], names[i]) for i in present]
    side = []
    if dpamt:
        side = [(pa, *dpamt.get(pa, (False, 0))) for pa in rows]
        if any(pair for _, pair, _ in side):
            items.append((PAIR_COLOUR, "PAMT page pair installed"))
        if any(ref > 0 for _, _, ref in side):
            items.append((REFCOUNT_COLOUR, "refcount (4K pages in use)", "bar"))
    leg_h = legend_height(width, [i[1] for i in items])
    left, top, bottom = 14 + max(text_px(f"{pa:#x}") for pa in rows), 44, \
        leg_h + 10
    body = ROW_PX * len(rows)
    height = top + body + bottom
    fig = css_figure(height, width)
    # the grid at device resolution: SCALE px per page, ROW_PX * SCALE per range, with a gap
    lut = np.array([[round(255 * v) for v in to_rgb(c)] for c in colours], dtype=np.uint8)
    rgb = lut[grid]  # rows x 512 x 3
    gap = SCALE * 2
    img = np.full((len(rows), ROW_PX * SCALE, PAGES_PER_2M * SCALE, 3), 255, dtype=np.uint8)
    img[:, : ROW_PX * SCALE - gap] = np.repeat(rgb, SCALE, axis=1)[:, None]
    img = img.reshape(len(rows) * ROW_PX * SCALE, PAGES_PER_2M * SCALE, 3)[::-1]
    fi = PixelImage(fig, img, round(left * SCALE), round(bottom * SCALE) + gap)
    fi.set_gid("pamt-grid")
    fig.images.append(fi)
    put_text(fig, 6 / width, 1 - 4 / height, f"PAMT: {len(rows)} x 2 MiB ranges, "
             f"{len(module.pamt.in_use())} pages assigned (colour: {by})",
             fontsize=MIN_FONT + 1, va="top")
    put_text(fig, left / width, 1 - 28 / height, "page 0", fontsize=MIN_FONT, va="center",
             color=palette.TEXT_DIM)
    put_text(fig, (left + PAGES_PER_2M) / width, 1 - 28 / height, "page 511", fontsize=MIN_FONT,
             va="center", ha="right", color=palette.TEXT_DIM)
    put_text(fig, (left + PAGES_PER_2M / 2) / width, 1 - 28 / height, "4 KiB pages of each 2 MiB",
             fontsize=MIN_FONT, va="center", ha="center", color=palette.TEXT_DIM)
    # one panel in CSS px: x = page index, y = row index from the top
    p = Panel.px(fig, left, bottom, PAGES_PER_2M, body, (0, PAGES_PER_2M), (len(rows), 0))
    for i, pa in enumerate(rows):
        p.text(-6, i + 0.45, f"{pa:#x}", fontsize=MIN_FONT, ha="right", va="center")
    if highlight_pa is not None:
        r = {pa: i for i, pa in enumerate(rows)}.get(highlight_pa & ~(PAGE_2M - 1))
        if r is not None:
            c = (highlight_pa % PAGE_2M) >> PAGE_SHIFT
            p.add(Rectangle((c - 4, r - 0.15), 9, 1.1, fill=False, edgecolor=HIGHLIGHT,
                            linewidth=2), gid="highlight")
    if dpamt:
        x0 = left + PAGES_PER_2M + 14
        bar = width - x0 - 60
        sp = Panel.px(fig, x0, bottom, width - x0 - 8, body, (0, width - x0 - 8),
                      (len(rows), 0))
        put_text(fig, x0 / width, 1 - 28 / height, "pair", fontsize=MIN_FONT, va="center")
        put_text(fig, (x0 + 36) / width, 1 - 28 / height, "refcount (of 512)", fontsize=MIN_FONT,
                 va="center")
        for i, (pa, pair, ref) in enumerate(side):
            sp.add(Rectangle((8, i + 0.12), 12, 0.75, facecolor=PAIR_COLOUR if pair
                             else "white", edgecolor=palette.EDGE, linewidth=0.6),
                   gid=f"pair:{pa:#x}")
            sp.add(Rectangle((36, i + 0.12), bar * min(ref, PAGES_PER_2M) / PAGES_PER_2M,
                             0.75, facecolor=REFCOUNT_COLOUR, edgecolor="none"),
                   gid=f"refcount:{pa:#x}")
            sp.add(Rectangle((36, i + 0.12), bar, 0.75, fill=False, edgecolor=palette.GREY,
                             linewidth=0.5), gid=f"refcount-of:{pa:#x}")
            if ref:
                sp.text(36 + bar + 4, i + 0.45, str(ref), fontsize=MIN_FONT, va="center")
    legend(fig, items, y=4)
    return fig
