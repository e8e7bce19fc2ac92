"""The Secure-EPT tree of one TD, one box per entry, coloured by `SeptState`.

Rows are S-EPT levels (3 = the root's 512 GiB entries at the top, 0 = 4 KiB leaves at the
bottom); a non-leaf entry sits above the entries of the table it points to. States and their
meaning: [M15] (module 1.5.01 `sept_state_lookup.c`).
Each box is a `Rectangle` whose gid is ``"L<level>:<gpa hex>"`` (tests read colours by gid).
"""

from __future__ import annotations

from matplotlib.patches import Rectangle

from ..tdx.sept import SeptState, level_size
from ._common import HIGHLIGHT, Panel, artists_by_gid, legend, new_figure

S = SeptState
STATE_COLOURS = {
    S.FREE: "#ffffff",
    S.REMOVED: "#d9d9d9",
    S.NL_MAPPED: "#6baed6",
    S.NL_BLOCKED: "#08519c",
    S.MAPPED: "#41ab5d",
    S.BLOCKED: "#e31a1c",
    S.BLOCKEDW: "#fd8d3c",
    S.PENDING: "#fee391",
    S.PENDING_BLOCKED: "#ae017e",
    S.PENDING_BLOCKEDW: "#f768a1",
}
_OTHER = "#bcbddc"  # export/import states, never reached by a KVM host
LEGEND_STATES = (S.NL_MAPPED, S.MAPPED, S.PENDING, S.BLOCKED, S.FREE)


def state_colour(state: SeptState) -> str:
    return STATE_COLOURS.get(state, _OTHER)


def _pick_td(module, tdr):
    if tdr is not None:
        return module.tds.get(tdr)
    return next((t for _, t in sorted(module.tds.items()) if t.tdcs is not None), None)


def draw_sept(model, tdr: int | None = None, *, highlight: tuple[int, int] | None = None,
              max_per_level: int = 24, width: float = 6.4, height: float = 2.4):
    """Draw the S-EPT of `model`: a `SecureEpt`, a `TdxModule` (the TD whose TDR is `tdr`,
    default the first TD with a TDCS), or None (nothing to draw).
    `highlight` = (level, gpa) of the entry just touched.
    Entries in state FREE that the module has looked up are drawn white with a dashed edge;
    at most `max_per_level` boxes per level (the rest are counted, "+N more")."""
    fig = new_figure(width, height)
    sept = model
    title = "Secure EPT"
    if model is None or hasattr(model, "tds"):
        td = None if model is None else _pick_td(model, tdr)
        sept = None if td is None or td.tdcs is None else td.tdcs.sept
        if td is not None and td.tdcs is not None:
            c = td.tdcs
            title = f"Secure EPT of TD {td.pa:#x}   TD_EPOCH={c.td_epoch}  REFCOUNT={c.refcount}"
    fig.text(0.01, 0.97, title, fontsize=8, va="top")
    widest = 1 if sept is None else max(
        [sum(1 for lv, _ in sept.entries if lv == lvl) for lvl in range(4)] + [1])
    cols = max(min(widest, max_per_level), 12)  # small trees get bigger boxes, not a corner
    p = Panel(fig, (0.05, 0.14, 0.88, 0.74), (-0.5, cols + 0.5), (3.95, -0.7))
    if sept is None:
        p.text(cols / 2, 1.5, "no S-EPT: the TD has no TDCS (not built, or reclaimed)",
               ha="center", fontsize=8, color="#555555")
        return fig
    by_level: dict[int, list] = {lvl: [] for lvl in range(4)}
    for (lvl, _gpa), e in sorted(sept.entries.items()):
        if lvl in by_level:
            by_level[lvl].append(e)
    pos: dict[tuple[int, int], float] = {}
    for lvl in range(4):  # leaves first, so parents can centre over their children
        entries = by_level[lvl]
        shown, extra = entries[:max_per_level], len(entries) - max_per_level
        slot = 0.0
        y = 3 - lvl
        for e in shown:
            kids = [x for (kl, kg), x in pos.items()
                    if kl == lvl - 1 and e.gpa <= kg < e.gpa + level_size(lvl)]
            x = sum(kids) / len(kids) if kids else slot
            slot = max(slot, x) + 1
            pos[(lvl, e.gpa)] = x
            hl = highlight == (lvl, e.gpa)
            p.add(Rectangle((x - 0.4, y - 0.3), 0.8, 0.6, facecolor=state_colour(e.state),
                            edgecolor=HIGHLIGHT if hl else "#333333",
                            linewidth=2.5 if hl else 0.6,
                            linestyle="--" if e.state == S.FREE else "-"),
                  gid=f"L{lvl}:{e.gpa:#x}")
        if extra > 0:
            p.text(cols - 0.2, y, f"+{extra}", fontsize=7, va="center")
        if lvl == 0 and len(shown) <= 12:
            for e in shown:
                p.text(pos[(lvl, e.gpa)], y + 0.5, f"{e.gpa >> 12:#x}", fontsize=5.5,
                       ha="center", va="center", color="#444444")
        p.text(-0.6, y, f"L{lvl}", fontsize=7, va="center", ha="right")
    segs = []  # edges: parent box bottom -> child box top
    for (lvl, gpa), x in pos.items():
        parent = (lvl + 1, gpa & ~(level_size(lvl + 1) - 1))
        if lvl < 3 and parent in pos:
            segs.append([(pos[parent], 3 - lvl - 0.7), (x, 3 - lvl - 0.3)])
    p.lines(segs, colors="#888888", linewidths=0.5)
    present = {e.state for e in sept.entries.values()}
    states = [s for s in LEGEND_STATES if s in present or s in (S.MAPPED, S.BLOCKED)]
    states += sorted(s for s in present if s not in states)
    legend(fig, [(state_colour(s), s.name) for s in states], y=0.01)
    return fig


def sept_colours(fig) -> dict[str, tuple]:
    """gid -> RGBA face colour of every entry box (for tests and exercises)."""
    return {g: a.get_facecolor() for g, a in artists_by_gid(fig).items()
            if g.startswith("L") and ":" in g}
