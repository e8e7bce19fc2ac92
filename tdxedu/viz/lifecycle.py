"""The TD's state machines in the TDX module, with the current state lit.

Top row: the TDR lifecycle (`td_lifecycle_state_t`) TD_HKID_ASSIGNED -> TD_KEYS_CONFIGURED ->
TD_BLOCKED -> TD_TEARDOWN, each arrow labelled with the SEAMCALL that moves it
([M15], module 1.5.01). Bottom row: TDCS OP_STATE UNINITIALIZED ->
INITIALIZED -> RUNNABLE (TDH.MNG.INIT, TDH.MR.FINALIZE). Dashed boxes at the ends are not
module states: "no TD" before TDH.MNG.CREATE and "TDR reclaimed" after the TDR page is
reclaimed. Boxes have gid ``"lifecycle:<NAME>"`` / ``"op_state:<NAME>"``.
"""

from __future__ import annotations

from matplotlib.patches import FancyArrowPatch, Rectangle

from ..tdx.td import Lifecycle, OpState
from ._common import Panel, new_figure

LIFECYCLE_ARROWS = ("TDH.MNG.KEY.CONFIG\n(every package)", "TDH.MNG.VPFLUSHDONE",
                    "TDH.MNG.KEY.FREEID")
OP_ARROWS = ("TDH.MNG.INIT", "TDH.MR.FINALIZE")
LIT = "#fdb863"
DIM = "#f0f0f0"


def draw_lifecycle(lifecycle: Lifecycle | None = None, op_state: OpState | None = None, *,
                   reclaimed: bool = False, width: float = 6.4):
    """Draw both state machines; light up `lifecycle` and `op_state` (None: not lit)."""
    fig = new_figure(width, 1.9)
    ax = Panel(fig, (0.0, 0.0, 1.0, 0.88), (-0.2, 6.25), (-0.1, 2.3))
    now = "TDR reclaimed" if reclaimed else ("no TD" if lifecycle is None else lifecycle.name)
    fig.text(0.01, 0.98, f"TD lifecycle: {now}"
             + (f", OP_STATE {op_state.name}" if op_state is not None else ""),
             fontsize=8, va="top")

    def box(x, y, w, name, lit, gid, dashed=False):
        ax.add(Rectangle((x, y), w, 0.55, facecolor=LIT if lit else DIM,
                         edgecolor="#d95f02" if lit else "#666666", linewidth=2 if lit else 0.6,
                         linestyle="--" if dashed else "-"), gid=gid)
        ax.text(x + w / 2, y + 0.27, name, ha="center", va="center", fontsize=6.3,
                weight="bold" if lit else None)

    def arrow(x0, x1, y, label):
        ax.add(FancyArrowPatch((x0, y), (x1, y), arrowstyle="-|>", mutation_scale=8,
                               color="#444444", linewidth=0.7))
        ax.text((x0 + x1) / 2, y + 0.33, label, ha="center", va="bottom", fontsize=5.2,
                color="#444444")

    y = 1.45
    box(-0.15, y, 0.55, "no TD", lifecycle is None and not reclaimed, "lifecycle:none", True)
    arrow(0.4, 0.55, y + 0.27, "")
    for i, s in enumerate(Lifecycle):
        x = 0.55 + i * 1.3
        box(x, y, 1.0, s.name, s == lifecycle, f"lifecycle:{s.name}")
        if i < 3:
            arrow(x + 1.0, x + 1.3, y + 0.27, LIFECYCLE_ARROWS[i])
    arrow(5.45, 5.6, y + 0.27, "")
    box(5.6, y, 0.6, "TDR\nreclaimed", reclaimed, "lifecycle:reclaimed", True)
    ax.text(0.55 + 1.9, y - 0.02, "TDH.MNG.CREATE enters TD_HKID_ASSIGNED; "
            "TDH.PHYMEM.PAGE.RECLAIM of the TDR ends it", fontsize=5.2, ha="center",
            va="top", color="#444444")
    y = 0.2
    ax.text(-0.15, y + 0.27, "OP_STATE", fontsize=6.5, va="center")
    for i, s in enumerate(OpState):
        x = 0.9 + i * 1.9
        box(x, y, 1.3, s.name, s == op_state, f"op_state:{s.name}")
        if i < 2:
            arrow(x + 1.3, x + 1.9, y + 0.27, OP_ARROWS[i])
    return fig
