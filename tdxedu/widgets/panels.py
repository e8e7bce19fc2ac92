"""Panels: (source, last step) -> (cache key, figure builder). The Stepper redraws a panel
only when its key changes, so a Step that leaves the PAMT alone does not re-render it."""

from __future__ import annotations

from ..steps import td_states, touched
from ..viz import draw_lifecycle, draw_pamt, draw_roots, draw_sept, draw_timeline
from ..viz.roots import live_roots


def _main(info):
    return None if info is None else info.main


def timeline_panel(src, info):
    main = _main(info)
    seq = None if main is None else main.seq
    return (len(src.trace), seq), lambda: draw_timeline(src.trace, highlight_seq=seq)


def sept_panel(src, info):
    m, tdr = src.module, src.tdr
    hl = touched(_main(info)).get("sept")
    if m is None:
        return ("none",), lambda: draw_sept(None)
    td = m.tds.get(tdr) if tdr else None
    c = None if td is None else td.tdcs
    key = ("none",) if c is None else (
        tdr, c.td_epoch, tuple(c.refcount), hl,
        tuple((k, e.state) for k, e in c.sept.entries.items()))
    return key, lambda: draw_sept(m, tdr, highlight=hl)


def pamt_panel(src, info):
    m = src.module
    page = touched(_main(info)).get("page")
    key = (page, tuple((p, e.pt, e.owner) for p, e in m.pamt.entries.items() if e.pt))
    return key, lambda: draw_pamt(m, highlight_pa=page)


def lifecycle_panel(src, info):
    m = src.module
    lc, op, gone = td_states(m, src.tdr) if m is not None else (None, None, False)
    return (lc, op, gone), lambda: draw_lifecycle(lc, op, reclaimed=gone)


def roots_panel(src, info):
    kvm = src.kvm
    roots = live_roots(kvm)
    key = tuple(r.state() for r in roots)
    return key, lambda: draw_roots(kvm)


# Panels whose key alone determines the picture (no model object drawn beyond it): their PNG
# can be shared between widgets and runs.
SHARED_KEYS = frozenset({"lifecycle"})

PANELS = {"timeline": timeline_panel, "sept": sept_panel, "pamt": pamt_panel,
          "lifecycle": lifecycle_panel, "roots": roots_panel}
