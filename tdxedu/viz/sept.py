"""The Secure-EPT tree of one TD, one box per entry, coloured by `SeptState`.

Rows are S-EPT levels (3 = the root's 512 GiB entries at the top, 0 = 4 KiB leaves at the
bottom); a non-leaf entry sits above the entries of the table it points to. States and their
meaning: [M15] (module 1.5.01 `sept_state_lookup.c`).
Each box is a `Rectangle` whose gid is ``"L<level>:<gpa hex>"`` (tests read colours by gid).
"""

from __future__ import annotations

from matplotlib.patches import Rectangle

from ..tdx.sept import SeptState, level_size
from . import palette
from ._common import (
    DISPLAY_WIDTH,
    HIGHLIGHT,
    MIN_FONT,
    Panel,
    artists_by_gid,
    css_figure,
    legend,
    legend_height,
    put_text,
    text_px,
)

S = SeptState
STATE_COLOURS = {s: palette.SEPT_STATES[s.name] for s in S if s.name in palette.SEPT_STATES}
_OTHER = palette.SEPT_OTHER  # export/import states, never reached by a KVM host
LEGEND_STATES = (S.NL_MAPPED, S.MAPPED, S.PENDING, S.BLOCKED, S.FREE)
LEVEL_PX = 34  # CSS px per S-EPT level


def state_colour(state: SeptState) -> str:
    return STATE_COLOURS.get(state, _OTHER)


def _pick_td(module, tdr):
    if tdr is not None:
        return module.tds.get(tdr)
    return next((t for _, t in sorted(module.tds.items()) if t.tdcs is not None), None)


def draw_sept(model, tdr: int | None = None, *, highlight: tuple[int, int] | None = None,
              max_per_level: int = 24, width: float = DISPLAY_WIDTH):
    """Draw the S-EPT of `model`: a `SecureEpt`, a `TdxModule` (the TD whose TDR is `tdr`,
    default the first TD with a TDCS), or None (nothing to draw: a one-line picture).
    `highlight` = (level, gpa) of the entry just touched.
    Entries in state FREE that the module has looked up are drawn white with a dashed edge;
    at most `max_per_level` boxes per level (the rest are counted, "+N more"). The legend
    lists the states drawn."""
    sept = model
    title = "Secure EPT"
    if model is None or hasattr(model, "tds"):
        td = None if model is None else _pick_td(model, tdr)
        sept = None if td is None or td.tdcs is None else td.tdcs.sept
        if td is not None and td.tdcs is not None:
            c = td.tdcs
            title = f"Secure EPT of TD {td.pa:#x}   TD_EPOCH={c.td_epoch}  REFCOUNT={c.refcount}"
    if sept is None:
        fig = css_figure(30, width)
        put_text(fig, 6 / width, 0.5, "Secure EPT: no S-EPT, the TD has no TDCS (not built yet, "
                 "or reclaimed)", fontsize=MIN_FONT + 1, va="center", color=palette.TEXT_DIM)
        return fig
    by_level: dict[int, list] = {lvl: [] for lvl in range(4)}
    for (lvl, _gpa), e in sorted(sept.entries.items()):
        if lvl in by_level:
            by_level[lvl].append(e)
    present = {e.state for lvl in range(4) for e in by_level[lvl][:max_per_level]}
    states = [s for s in LEGEND_STATES if s in present]
    states += sorted((s for s in present if s not in states), key=lambda s: s.name)
    labels = [s.name for s in states]
    leg_h = legend_height(width, labels)
    widest = max([len(v) for v in by_level.values()] + [1])
    cols = max(min(widest, max_per_level), 12)  # small trees get bigger boxes, not a corner
    left, right = 36, 40
    col_px = (width - left - right) / (cols + 1)
    leaves = by_level[0][:max_per_level]
    leaf_labels = [f"{e.gpa >> 12:#x}" for e in leaves]
    label_leaves = bool(leaves) and max(text_px(t) for t in leaf_labels) + 4 \
        <= col_px
    top, bottom = 26, leg_h + 10 + (18 if label_leaves else 0)
    height = top + 4 * LEVEL_PX + bottom
    fig = css_figure(height, width)
    put_text(fig, 6 / width, 1 - 4 / height, title, fontsize=MIN_FONT + 1, va="top")
    p = Panel.px(fig, left, bottom, width - left - right, 4 * LEVEL_PX, (-0.5, cols + 0.5),
                 (3.5, -0.5))
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
            p.add(Rectangle((x - 0.4, y - 0.34), 0.8, 0.68, facecolor=state_colour(e.state),
                            edgecolor=HIGHLIGHT if hl else palette.EDGE,
                            linewidth=3 if hl else 0.7,
                            linestyle="--" if e.state == S.FREE else "-"),
                  gid=f"L{lvl}:{e.gpa:#x}")
        if extra > 0:
            p.text(cols + 0.1, y, f"+{extra}", fontsize=MIN_FONT, va="center")
        p.text(-0.6, y, f"L{lvl}", fontsize=MIN_FONT, va="center", ha="right")
    if label_leaves:
        for e, t in zip(leaves, leaf_labels, strict=True):
            put_text(fig, (left + (pos[(0, e.gpa)] + 0.5) * col_px) / width,
                     (bottom - 4) / height, t, fontsize=MIN_FONT, ha="center", va="top",
                     color=palette.TEXT_DIM)
        put_text(fig, 4 / width, (bottom - 4) / height, "GFN", fontsize=MIN_FONT, va="top",
                 color=palette.TEXT_DIM)
    segs = []  # edges: parent box bottom -> child box top
    for (lvl, gpa), x in pos.items():
        parent = (lvl + 1, gpa & ~(level_size(lvl + 1) - 1))
        if lvl < 3 and parent in pos:
            segs.append([(pos[parent], 3 - lvl - 0.66), (x, 3 - lvl - 0.34)])
    p.lines(segs, colors=palette.GREY, linewidths=0.8)
    legend(fig, [(state_colour(s), s.name) for s in states], y=4)
    return fig


def sept_colours(fig) -> dict[str, tuple]:
    """gid -> RGBA face colour of every entry box (for tests and exercises)."""
    return {g: a.get_facecolor() for g, a in artists_by_gid(fig).items()
            if g.startswith("L") and ":" in g}
