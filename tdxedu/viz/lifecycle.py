"""The TD's state machines in the TDX module, with the current state lit.

Top row: the TDR lifecycle (`td_lifecycle_state_t`) TD_HKID_ASSIGNED -> TD_KEYS_CONFIGURED ->
TD_BLOCKED -> TD_TEARDOWN, each arrow labelled with the SEAMCALL that moves it
([M15], module 1.5.01). Bottom row: TDCS OP_STATE UNINITIALIZED ->
INITIALIZED -> RUNNABLE (TDH.MNG.INIT, TDH.MR.FINALIZE). Dashed boxes at the ends are not
module states: "no TD" before TDH.MNG.CREATE and "TDR reclaimed" after the TDR page is
reclaimed. Boxes have gid ``"lifecycle:<NAME>"`` / ``"op_state:<NAME>"``. No legend: every
box is labelled, and the lit one is named in the title.
"""

from __future__ import annotations

from matplotlib.patches import FancyArrowPatch, Rectangle

from ..tdx.td import Lifecycle, OpState
from . import palette
from ._common import (
    DISPLAY_WIDTH,
    MIN_FONT,
    Panel,
    css_figure,
    put_text,
    text_px,
)

LIFECYCLE_ARROWS = ("TDH.MNG.KEY.CONFIG\n(every package)", "TDH.MNG.VPFLUSHDONE",
                    "TDH.MNG.KEY.FREEID")
OP_ARROWS = ("TDH.MNG.INIT", "TDH.MR.FINALIZE")
LIT = palette.LIT_FILL
DIM = palette.DIM
BOX_PX = 26  # CSS px: the height of a state box


def draw_lifecycle(lifecycle: Lifecycle | None = None, op_state: OpState | None = None, *,
                   reclaimed: bool = False, width: float = DISPLAY_WIDTH):
    """Draw both state machines; light up `lifecycle` and `op_state` (None: not lit)."""
    height = 170
    fig = css_figure(height, width)
    ax = Panel.px(fig, 0, 0, width, height, (0, width), (height, 0))  # CSS px, y down
    now = "TDR reclaimed" if reclaimed else ("no TD" if lifecycle is None else lifecycle.name)
    put_text(fig, 6 / width, 1 - 4 / height, f"TD lifecycle: {now}"
             + (f", OP_STATE {op_state.name}" if op_state is not None else ""),
             fontsize=MIN_FONT + 1, va="top")

    def box(x, y, w, name, lit, gid, dashed=False, h=BOX_PX):
        ax.add(Rectangle((x, y), w, h, facecolor=LIT if lit else DIM,
                         edgecolor=palette.LIT if lit else palette.DARK_GREY,
                         linewidth=2.5 if lit else 0.7, linestyle="--" if dashed else "-"),
               gid=gid)
        ax.text(x + w / 2, y + h / 2, name, ha="center", va="center",
                fontsize=MIN_FONT, weight="bold" if lit else None)
        return x + w

    def arrow(x0, x1, y, label=""):
        ax.add(FancyArrowPatch((x0, y), (x1, y), arrowstyle="-|>", mutation_scale=12,
                               color=palette.TEXT_DIM, linewidth=1))
        if label:
            ax.text((x0 + x1) / 2, y - BOX_PX / 2 - 3, label, ha="center", va="bottom",
                    fontsize=MIN_FONT, color=palette.TEXT_DIM, linespacing=1.1)

    def w_of(name):
        return max(text_px(line, bold=True) for line in name.split("\n")) + 14

    y = 58
    gap, end_gap = 40, 14
    names = [s.name for s in Lifecycle]
    total = (w_of("no TD") + end_gap + sum(w_of(n) for n in names) + 3 * gap + end_gap
             + w_of("reclaimed"))
    x = max((width - total) / 2, 4)
    x = box(x, y, w_of("no TD"), "no TD", lifecycle is None and not reclaimed,
            "lifecycle:none", True)
    arrow(x, x + end_gap, y + BOX_PX / 2)
    x += end_gap
    first = x
    for i, s in enumerate(Lifecycle):
        x = box(x, y, w_of(s.name), s.name, s == lifecycle, f"lifecycle:{s.name}")
        if i < 3:
            arrow(x, x + gap, y + BOX_PX / 2, LIFECYCLE_ARROWS[i])
            x += gap
    last = x
    arrow(x, x + end_gap, y + BOX_PX / 2)
    box(x + end_gap, y - 7, w_of("reclaimed"), "TDR\nreclaimed", reclaimed,
        "lifecycle:reclaimed", True, h=BOX_PX + 14)
    ax.text((first + last) / 2, y + BOX_PX + 5, "TDH.MNG.CREATE enters TD_HKID_ASSIGNED; "
            "TDH.PHYMEM.PAGE.RECLAIM of the TDR ends it", fontsize=MIN_FONT, ha="center",
            va="top", color=palette.TEXT_DIM)
    y = 132
    ax.text(first, y + BOX_PX / 2, "OP_STATE", fontsize=MIN_FONT, va="center", ha="right")
    x = first + 16
    for i, s in enumerate(OpState):
        x = box(x, y, w_of(s.name) + 20, s.name, s == op_state, f"op_state:{s.name}")
        if i < 2:
            arrow(x, x + 130, y + BOX_PX / 2, OP_ARROWS[i])
            x += 130
    return fig
