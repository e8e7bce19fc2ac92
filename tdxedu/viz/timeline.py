"""A timeline of a `Trace`: one lane per logical CPU, one mark per event.

Events without a CPU (a KVM thread that the model does not pin: a vCPU thread, the zap worker,
an RCU callback, `kvm_destroy_vm`) get a lane named after that actor (`lane_label`).
Marks and colours come from `tdxedu.viz.palette.MARKS`:

* SEAMCALLs / TDCALLs (events whose source is the TDX module): coloured and shaped by outcome
  (success, not-an-error status, BUSY, error).
* IPIs (`kvm_make_all_cpus_request`, `smp_call_function_single`): triangles.
* lock / unlock events: ticks; a lock hold (``*lock`` until the matching ``*unlock`` of the
  same actor) is a bar above the lane.
* a vCPU in the guest (TDH.VP.ENTER that entered, until `td_exit` on that CPU): a band.
* KVM steps with no SEAMCALL: small dots.
The x axis is the event sequence number; only the last `window` events are drawn. The legend
lists exactly the kinds drawn. Each mark group is a collection whose gid names the kind
(``"seamcall:ok"``, ``"seamcall:busy"``, ``"ipi"``, ``"lock"``, ``"kvm"``); spans have gids
``"guest:cpu<N>:<seq>"`` and ``"lock-hold:<lock>:<seq>"``.
"""

from __future__ import annotations

import re

from ..tdx.status import status_outcome
from ..trace import event_kind
from . import palette
from ._common import (
    DISPLAY_WIDTH,
    MIN_FONT,
    Panel,
    css_figure,
    legend,
    legend_height,
    put_text,
    text_px,
)
from .palette import MARKS

ACTOR_LANES = {"zap": "zap worker", "kworker": "tdp_mmu_zap_wq worker",
               "rcu": "RCU callback", "destroy": "kvm_destroy_vm", "memslot": "memslot update",
               "migrate": "vCPU migration", "main": "KVM thread", "kvm": "KVM thread"}
LANE_PX = 26  # CSS px per lane


def lane_label(lane) -> str:
    """A lane's name: ``cpu<N>`` for a logical CPU, else the actor that ran the events
    (``vcpu0`` -> "vCPU0 thread", ``rcu`` -> "RCU callback", ``destroy`` -> "kvm_destroy_vm")."""
    if isinstance(lane, int):
        return f"cpu{lane}"
    actor = str(lane[1] if isinstance(lane, tuple) else lane)
    m = re.fullmatch(r"vcpu(\d+)", actor)
    if m:
        return f"vCPU{m.group(1)} thread"
    m = re.fullmatch(r"reader(\d+)", actor)
    if m:
        return f"mmu_lock reader {m.group(1)}"
    return ACTOR_LANES.get(actor, actor)


def _lane(e):
    return e.cpu if e.cpu is not None else ("actor", e.actor)


def _events(trace_or_events):
    return list(getattr(trace_or_events, "events", trace_or_events))


def timeline_marks(trace, window: int = 48) -> dict[str, list[tuple[int, str]]]:
    """kind[:outcome] -> [(seq, lane name)] for the events a timeline would draw."""
    evs = _events(trace)[-window:] if window else _events(trace)
    out: dict[str, list[tuple[int, str]]] = {}
    for e in evs:
        k = event_kind(e)
        if k == "seamcall":
            k = f"seamcall:{status_outcome(e.status)}"
        out.setdefault(k, []).append((e.seq, lane_label(_lane(e))))
    return out


def guest_spans(trace) -> list[tuple[int, int, int | None]]:
    """(cpu, start seq, end seq or None while still in the guest) for every guest run."""
    spans, open_ = [], {}
    for e in _events(trace):
        if e.op == "tdh_vp_enter" and e.status == "TDX_SUCCESS":
            open_[e.cpu] = e.seq
        elif e.op == "td_exit" and e.cpu in open_:
            spans.append((e.cpu, open_.pop(e.cpu), e.seq))
    spans += [(cpu, s, None) for cpu, s in open_.items()]
    return spans


def _lock_spans(evs) -> list[tuple[object, str, int, int | None]]:
    """(lane, lock name, start, end) from ``*lock`` / ``*unlock`` event pairs of one actor."""
    spans, open_ = [], {}
    for e in evs:
        if event_kind(e) != "lock":
            continue
        name = str(e.args[0]) if e.args else e.op
        key = (e.actor, name)
        if e.op.endswith("unlock"):
            if key in open_:
                lane, s = open_.pop(key)
                spans.append((lane, name, s, e.seq))
        else:
            open_[key] = (_lane(e), e.seq)
    spans += [(lane, name, s, None) for (_, name), (lane, s) in open_.items()]
    return spans


def lock_spans(trace) -> list[tuple[object, str, int, int | None]]:
    """(cpu, lock name, start, end) from ``*lock`` / ``*unlock`` event pairs."""
    return [(lane if isinstance(lane, int) else None, name, s, end)
            for lane, name, s, end in _lock_spans(_events(trace))]


def draw_timeline(trace, *, window: int = 48, highlight_seq: int | None = None,
                  cpus: list | None = None, width: float | None = None,
                  title: str | None = None):
    """Draw the last `window` events of `trace` (a `Trace` or a list of `Event`). `cpus`
    fixes the CPU lanes (events of other CPUs are not drawn); `width` in CSS px."""
    evs = _events(trace)
    shown = evs[-window:] if window else evs
    lanes: list = list(cpus) if cpus is not None else sorted(
        {e.cpu for e in evs if e.cpu is not None})
    in_view = {_lane(e) for e in shown if e.cpu is None}
    for e in evs:  # actor lanes in order of their first event
        if _lane(e) in in_view and _lane(e) not in lanes:
            lanes.append(_lane(e))
    if not lanes:
        lanes = [0]
    lane_y = {c: i for i, c in enumerate(lanes)}

    groups: dict[str, list] = {}
    for e in shown:
        y = lane_y.get(_lane(e))
        if y is None:
            continue
        k = event_kind(e)
        if k == "seamcall":
            k = f"seamcall:{status_outcome(e.status)}"
        groups.setdefault(k, []).append((e.seq, y))
    lo = shown[0].seq if shown else 0
    hi = shown[-1].seq if shown else 1
    guests = [(c, s, end) for c, s, end in guest_spans(evs)
              if c in lane_y and (end is None or end >= lo)]
    locks = [(c, n, s, end) for c, n, s, end in _lock_spans(evs)
             if c in lane_y and (end is None or end >= lo)]
    drawn = set(groups) | ({"guest"} if guests else set()) | ({"lock-hold"} if locks else set())
    kinds = [k for k in MARKS if k in drawn]
    labels = [MARKS[k].label for k in kinds]

    fig_w = width or DISPLAY_WIDTH
    leg_h = legend_height(fig_w, labels)
    names = [lane_label(c) for c in lanes]
    left = 16 + max(text_px(n) for n in names)
    top = 26 + 18  # title, then the strip for the last event's label
    body = LANE_PX * len(lanes)
    bottom = leg_h + 10
    fig = css_figure(top + body + bottom, fig_w)
    put_text(fig, 6 / fig_w, 1 - 4 / (top + body + bottom), title or f"timeline: {len(evs)} events"
             + (f" (last {len(shown)})" if len(shown) < len(evs) else ""),
             fontsize=MIN_FONT + 1, va="top")
    x_hi = max(hi, lo + 8) + 1
    ax = Panel.px(fig, left, bottom, fig_w - left - 10, body, (lo - 1, x_hi),
                  (len(lanes) - 0.5, -0.5))
    for c, y in lane_y.items():
        ax.text(lo - 1 - 0.4 * (x_hi - lo + 1) / (fig_w - left), y, lane_label(c),
                fontsize=MIN_FONT, ha="right", va="center")
    ax.lines([[(lo - 1, y), (x_hi, y)] for y in lane_y.values()], colors=palette.LIGHT_GREY,
             linewidths=0.8)
    # spans first, under the marks
    g = MARKS["guest"]
    for cpu, s, end in guests:
        ax.line([max(s, lo - 1), x_hi if end is None else end], [lane_y[cpu]] * 2,
                color=g.colour, linewidth=16, solid_capstyle="butt",
                gid=f"guest:cpu{cpu}:{s}")
    h = MARKS["lock-hold"]
    for lane, name, s, end in locks:
        ax.line([max(s, lo - 1), x_hi if end is None else end], [lane_y[lane] - 0.36] * 2,
                color=h.colour, linewidth=3, solid_capstyle="butt", gid=f"lock-hold:{name}:{s}")
    size = {"kvm": 20, "lock": 110, "ipi": 80}
    for k, pts in sorted(groups.items()):
        xs, ys = zip(*pts, strict=True)
        m = MARKS[k]
        if m.marker == "|":
            ax.marks(xs, ys, m.marker, size[k], gid=k, edgecolors=m.colour, linewidths=2)
        else:
            ax.marks(xs, ys, m.marker, size.get(k, 70), gid=k, facecolors=m.colour,
                     edgecolors=palette.EDGE if k != "kvm" else m.colour, linewidths=0.6)
    last = next((e for e in reversed(shown) if e.seq == highlight_seq), None)
    if last is None and highlight_seq is None and shown:
        last = shown[-1]
    if last is not None and _lane(last) in lane_y:
        y = lane_y[_lane(last)]
        ax.line([last.seq], [y], marker="o", markersize=16, fillstyle="none",
                color=palette.HIGHLIGHT, markeredgewidth=1.5, gid="highlight")
        label = last.op + (f" -> {last.status}" if last.status else "")
        right = last.seq > (lo + x_hi) / 2
        put_text(fig, (left + (last.seq - lo + 1) / (x_hi - lo + 1) * (fig_w - left - 10))
                 / fig_w, 1 - (26 + 9) / (top + body + bottom), "last step: " + label[:70],
                 fontsize=MIN_FONT, ha="right" if right else "left", va="center",
                 gid="highlight-label")
    legend(fig, [(MARKS[k].colour, MARKS[k].label, MARKS[k].marker) for k in kinds], y=4)
    return fig
