"""The TDP MMU root list of one VM: a row per root with its role, valid/invalid, and a bar per
reference holder whose length is the number of references it holds.

Data: `kvm.arch.tdp_mmu_roots` (roots on the list) and `kvm.arch.tdp_mmu_live` (roots not yet
freed), each a `tdxedu.kvm.tdp_mmu.KvmMmuPage` with `tdp_mmu_root_count`, `refs` (holder ->
count: "tdp_mmu", "vcpu0.root", "vcpu0.prev1", "tdp_mmu_zap_wq", "iter:<actor>", ...),
`role` and flags. Reference holders as `tdxedu.kvm.tdp_mmu` models them. A red mark flags a root
whose holders
do not add up to its count (the model's explanation disagreeing with the kernel's number).
"""

from __future__ import annotations

from matplotlib.patches import Rectangle

from . import palette
from ._common import (
    DISPLAY_WIDTH,
    ERROR,
    MIN_FONT,
    Panel,
    css_figure,
    legend,
    legend_height,
    put_text,
    text_px,
)

HOLDER_COLOURS = palette.HOLDERS
HOLDER_LABELS = {"tdp_mmu": "tdp_mmu (the list's own)", "root": "vCPU root", "prev":
                 "vCPU prev_roots", "mirror": "vCPU mirror root", "tdp_mmu_zap_wq":
                 "zap workqueue", "iter": "iterator", "other": "other"}
ROW_PX = 24  # CSS px per root


def holder_kind(holder: str) -> str:
    if holder in ("tdp_mmu", "tdp_mmu_zap_wq"):
        return holder
    if holder.startswith("iter:"):
        return "iter"
    slot = holder.rsplit(".", 1)[-1]
    if slot == "root" or slot == "mirror":
        return slot
    if slot.startswith("prev"):
        return "prev"
    return "other"


def live_roots(kvm) -> list:
    """Roots on `kvm.arch.tdp_mmu_roots`, then roots not yet freed (`tdp_mmu_live`)."""
    a = kvm.arch
    seen, out = set(), []
    for r in list(getattr(a, "tdp_mmu_roots", [])) + list(getattr(a, "tdp_mmu_live", {})
                                                             .values()):
        if id(r) not in seen:
            seen.add(id(r))
            out.append(r)
    return out


def draw_roots(kvm, *, highlight: int | None = None, width: float = DISPLAY_WIDTH,
               max_roots: int = 12):
    """Draw the roots of `kvm` (a `tdxedu.kvm.kvm.Kvm` with the TDP MMU initialised).
    Bars have gid ``"root#<hpa>:<holder>"``; `highlight` is the hpa of the root a step
    touched. The legend lists the holder kinds drawn (and the mismatch mark when drawn)."""
    roots = live_roots(kvm)[:max_roots]
    kinds = sorted({holder_kind(h) for r in roots for h, n in r.refs.items() if n > 0})
    mismatch = any(sum(n for n in r.refs.values() if n > 0) != r.tdp_mmu_root_count
                   for r in roots)
    items = [(HOLDER_COLOURS[k], HOLDER_LABELS[k]) for k in kinds]
    if mismatch:
        items.append((ERROR, "count != references held", "|"))
    leg_h = legend_height(width, [i[1] for i in items])
    labels = []
    for r in roots:
        flags = [f for f, on in (("invalid", r.invalid),
                                 ("to_zap", getattr(r, "tdp_mmu_scheduled_root_to_zap", False)),
                                 ("rcu", getattr(r, "rcu_pending", False)),
                                 ("freed", getattr(r, "freed", False)),
                                 ("off-list", not getattr(r, "on_list", True))) if on]
        hl = highlight == r.hpa
        labels.append(f"{'> ' if hl else ''}root#{r.hpa} {r.role} count="
                      f"{r.tdp_mmu_root_count}" + (f" [{', '.join(flags)}]" if flags else ""))
    left = min(16 + max([text_px(t, bold=t.startswith(">")) for t in labels] + [60]), width * 0.6)
    top, bottom = 28, leg_h + 10
    body = ROW_PX * max(len(roots), 1)
    height = top + body + bottom
    fig = css_figure(height, width)
    pol = getattr(getattr(kvm.arch, "tdp_mmu_policy", None), "name", "?")
    put_text(fig, 6 / width, 1 - 4 / height, f"TDP MMU roots (policy {pol}): {len(roots)} live, "
             f"{getattr(kvm.arch, 'tdp_mmu_pages', 0)} page-table pages",
             fontsize=MIN_FONT + 1, va="top")
    most = max([r.tdp_mmu_root_count for r in roots] + [sum(r.refs.values()) for r in roots]
               + [4])
    ax = Panel.px(fig, left, bottom, width - left - 12, body, (0, most + 0.5),
                  (max(len(roots), 1) - 0.5, -0.5))
    if not roots:
        put_text(fig, 6 / width, (bottom + body / 2) / height,
                 "no roots (no vCPU has loaded its MMU yet, or all freed)",
                 fontsize=MIN_FONT, va="center", color=palette.TEXT_DIM)
    for i, r in enumerate(roots):
        x = 0.0
        for holder, n in sorted(r.refs.items()):
            if n <= 0:
                continue
            k = holder_kind(holder)
            ax.add(Rectangle((x, i - 0.34), n, 0.68, facecolor=HOLDER_COLOURS[k],
                             edgecolor=palette.EDGE, linewidth=0.6,
                             hatch="//" if r.invalid else None), gid=f"root#{r.hpa}:{holder}")
            x += n
        if x != r.tdp_mmu_root_count:
            ax.line([r.tdp_mmu_root_count], [i], marker="|", color=ERROR, markersize=18,
                    markeredgewidth=3, gid=f"mismatch#{r.hpa}")
        hl = highlight == r.hpa
        put_text(fig, (left - 8) / width, (bottom + body - (i + 0.5) * ROW_PX) / height,
                 labels[i], fontsize=MIN_FONT, ha="right", va="center", gid=f"label#{r.hpa}",
                 color=palette.GREY if r.invalid else "black", weight="bold" if hl else None)
    legend(fig, items, y=4)
    return fig
