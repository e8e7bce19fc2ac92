"""A per-CPU timeline of a `Trace`: one lane per logical CPU, one mark per event.

* SEAMCALLs / TDCALLs (events whose source is the TDX module): squares coloured by outcome
  (success, not-an-error status, BUSY, error); errors also get a red cross.
* IPIs (`kvm_make_all_cpus_request`, `smp_call_function_single`): purple triangles.
* KVM steps with no SEAMCALL: small grey dots.
* Spans: a vCPU in the guest (TDH.VP.ENTER that entered, until `td_exit` on that CPU), and
  lock holds (an event named ``*lock`` / ``*lock_*`` until the matching ``*unlock``).
Events without a CPU go to a lane "-". The x axis is the event sequence number; only the last
`window` events are drawn. Each mark group is a collection whose gid names the kind
(``"seamcall:ok"``, ``"seamcall:busy"``, ``"ipi"``, ``"kvm"``, ``"error-x"``).
"""

from __future__ import annotations

from ..tdx.status import status_outcome
from ..trace import event_kind
from ._common import (
    ERROR,
    HIGHLIGHT,
    OUTCOME_COLOURS,
    Panel,
    legend,
    new_figure,
)


def _events(trace_or_events):
    return list(getattr(trace_or_events, "events", trace_or_events))


def _lane_name(cpu) -> str:
    return "-" if cpu is None else f"cpu{cpu}"


def timeline_marks(trace, window: int = 48) -> dict[str, list[tuple[int, str]]]:
    """kind[:outcome] -> [(seq, lane name)] for the events a timeline would draw."""
    evs = _events(trace)[-window:] if window else _events(trace)
    out: dict[str, list[tuple[int, str]]] = {}
    for e in evs:
        k = event_kind(e)
        if k == "seamcall":
            k = f"seamcall:{status_outcome(e.status)}"
        out.setdefault(k, []).append((e.seq, _lane_name(e.cpu)))
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


def lock_spans(trace) -> list[tuple[object, str, int, int | None]]:
    """(cpu, lock name, start, end) from ``*lock`` / ``*unlock`` event pairs."""
    spans, open_ = [], {}
    for e in _events(trace):
        if event_kind(e) != "lock":
            continue
        name = str(e.args[0]) if e.args else e.op
        key = (e.actor, name)
        if e.op.endswith("unlock"):
            if key in open_:
                cpu, s = open_.pop(key)
                spans.append((cpu, name, s, e.seq))
        else:
            open_[key] = (e.cpu, e.seq)
    spans += [(cpu, name, s, None) for (_, name), (cpu, s) in open_.items()]
    return spans


def draw_timeline(trace, *, window: int = 48, highlight_seq: int | None = None,
                  cpus: list | None = None, width: float = 6.4, title: str | None = None):
    """Draw the last `window` events of `trace` (a `Trace` or a list of `Event`)."""
    evs = _events(trace)
    shown = evs[-window:] if window else evs
    lanes = list(cpus) if cpus is not None else sorted(
        {e.cpu for e in evs if e.cpu is not None})
    if any(e.cpu is None for e in shown) and None not in lanes:
        lanes.append(None)
    if not lanes:
        lanes = [0]
    lane_y = {c: i for i, c in enumerate(lanes)}
    fig = new_figure(width, 0.9 + 0.32 * len(lanes))
    fig.text(0.01, 0.98, title or f"timeline: {len(evs)} events"
             + (f" (last {len(shown)})" if len(shown) < len(evs) else ""),
             fontsize=8, va="top")
    lo = shown[0].seq if shown else 0
    hi = shown[-1].seq if shown else 1
    ax = Panel(fig, (0.08, 0.2, 0.9, 0.62), (lo - 1, max(hi, lo + 8) + 1),
               (len(lanes) - 0.5, -0.6))
    for c, y in lane_y.items():
        ax.text(lo - 1.5, y, _lane_name(c), fontsize=7, ha="right", va="center")
    ax.lines([[(lo - 1, y), (hi + 1, y)] for y in lane_y.values()], colors="#e0e0e0",
             linewidths=0.6)
    # spans first, under the marks
    for cpu, s, end in guest_spans(evs):
        if cpu in lane_y and (end is None or end >= lo):
            ax.line([max(s, lo - 1), hi + 1 if end is None else end], [lane_y[cpu]] * 2,
                    color="#74add1", linewidth=6, alpha=0.35, solid_capstyle="butt",
                    gid=f"guest:cpu{cpu}:{s}")
    for cpu, name, s, end in lock_spans(evs):
        if cpu in lane_y and (end is None or end >= lo):
            ax.line([max(s, lo - 1), hi + 1 if end is None else end],
                    [lane_y[cpu] + 0.25] * 2, color="#984ea3", linewidth=2.5,
                    gid=f"lock:{name}:{s}")
    groups: dict[str, list] = {}
    for e in shown:
        y = lane_y.get(e.cpu)
        if y is None:
            continue
        k = event_kind(e)
        if k == "seamcall":
            k = f"seamcall:{status_outcome(e.status)}"
        groups.setdefault(k, []).append((e.seq, y))
    style = {"ipi": ("^", "#6a3d9a", 40), "kvm": ("o", "#969696", 10),
             "lock": ("s", "#984ea3", 10)}
    for k, pts in sorted(groups.items()):
        xs, ys = zip(*pts, strict=True)
        if k.startswith("seamcall:"):
            outcome = k.split(":", 1)[1]
            ax.marks(xs, ys, "s", 36, gid=k, edgecolors="#333333", linewidths=0.4,
                     facecolors=OUTCOME_COLOURS.get(None if outcome == "None" else outcome))
            if outcome == "error":
                ax.marks(xs, ys, "x", 60, gid="error-x", edgecolors=ERROR, facecolors=ERROR)
        else:
            m, colour, size = style[k]
            ax.marks(xs, ys, m, size, gid=k, facecolors=colour, edgecolors=colour)
    last = next((e for e in reversed(shown) if e.seq == highlight_seq), None)
    if last is None and highlight_seq is None and shown:
        last = shown[-1]
    if last is not None and last.cpu in lane_y:
        ax.line([last.seq], [lane_y[last.cpu]], marker="o", markersize=13, fillstyle="none",
                color=HIGHLIGHT, markeredgewidth=2, gid="highlight")
        label = last.op + (f" -> {last.status}" if last.status else "")
        ax.text(last.seq, lane_y[last.cpu] - 0.42, label[:60], fontsize=6.5,
                ha="right" if last.seq > (lo + hi) / 2 else "left", va="bottom",
                gid="highlight-label")
    legend(fig, [(OUTCOME_COLOURS["ok"], "SEAMCALL ok"), (OUTCOME_COLOURS["info"], "not error"),
                 (OUTCOME_COLOURS["busy"], "BUSY"), (OUTCOME_COLOURS["error"], "error"),
                 ("#6a3d9a", "IPI"), ("#c6dbef", "in guest")], y=0.02, step=0.16)
    return fig
